"""The exposure rules on the protocol's held-out renderings: median absolute exposure error (stops) of the
analytic inverse, the ISO 12232 metered prior (round 7) and the highlight-gated metered prior (round 8),
each held-out family at its own fold's fitted weights (docs/lofo-round8-highlights.md, section 2).

    python benchmarks/exposure_heldout.py runs/lofo-e

Needs the folds' fits, written by ``benchmarks/lofo.py --metering-weight fit [--highlight-gate]`` as
WORK/fold-F/run/metering.json and metering-gate.json. No network takes part.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

FAMILIES = ("canon_powershot", "kodak", "gopro")


def family_errors(work: Path, family: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """(cameras per rendering, {rule: exposure error per rendering}) of ``family``'s held-out renderings."""
    from rawedge.training.metering import blended_errors, exposure_offsets

    run = work / f"fold-{family}" / "run"
    plain = json.loads((run / "metering.json").read_text())
    gated = json.loads((run / "metering-gate.json").read_text())
    rows = exposure_offsets(work / f"fold-{family}" / "eval")
    return [r["camera"] for r in rows], {"analytic inverse": blended_errors(rows, 0.0),
                                         "metered (round 7)": blended_errors(rows, plain["kappa"]),
                                         "gated (round 8)": blended_errors(rows, gated["kappa"], gated["knee"])}

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path, help="a benchmarks/lofo.py work folder (e.g. runs/lofo-e)")
    args = parser.parse_args()
    for family in FAMILIES:
        cameras, errors = family_errors(args.work, family)
        print(f"{family} ({len(cameras)} renderings): "
              + ", ".join(f"{k} {np.median(np.abs(v)):.2f}" for k, v in errors.items()))
        for cam in sorted(set(cameras)):
            pick = np.array([c == cam for c in cameras])
            print(f"  {cam}: " + ", ".join(f"{k} {np.median(np.abs(v[pick])):.2f}" for k, v in errors.items()))


if __name__ == "__main__":
    main()
