"""What ``rawedge hedge`` is worth on a camera the model never saw, from the leave-one-family-out sweeps.

    python benchmarks/hedge_camera.py runs/lofo-e runs/lofo-g runs/lofo-h --tones 1.0,0.75,0.5,0.0

For every fold model and every camera of its held-out family with at least three RAW files, the files are
split as ``rawedge hedge`` splits them (``rawedge.calibration.dataset.split_sources``, --holdout 0.34), the
hedge is chosen on the renderings of the choosing files (``rawedge.training.blend.choose_by_file``) and
scored on the held-out files' renderings: the same renderings, sweeps and rule as the command, read from
the folds' cached sweeps (``benchmarks/lofo.py --sweep --tones ...``). Several split seeds, so one lucky
split does not decide. Gains are over the analytic inverse, in dB, on the held-out files only.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from lofo import sweep_cache  # benchmarks/ is on the path when this script runs
from rawedge.calibration.dataset import split_sources

from rawedge.training.blend import _source, baseline, choose_by_file, hedge_grid

FAMILIES = ("gopro", "canon_powershot", "kodak")


def cached_sweep(work: Path, family: str, mu: float) -> list[dict]:
    path = sweep_cache(work / f"fold-{family}" / "run", family, mu)
    if not path.is_file():
        raise SystemExit(f"{path}: missing; run benchmarks/lofo.py --work {work} --sweep --tones ... first")
    return json.loads(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("works", nargs="+", type=Path, help="lofo work folders (one per training seed)")
    parser.add_argument("--tones", default="1.0,0.75,0.5,0.0")
    parser.add_argument("--holdout", type=float, default=0.34)
    parser.add_argument("--splits", type=int, default=5, help="split seeds per camera")
    parser.add_argument("--by", choices=("camera", "family"), default="camera",
                        help="the unit hedged: one camera, or a whole held-out family as if it were one camera "
                             "(the GoPros have one or two files per camera)")
    args = parser.parse_args()
    tones = tuple(float(t) for t in args.tones.split(","))
    print("| work | camera | files | held-out RAW gain (mean; worst split) | held-out sRGB gain (mean; worst split) "
          "| unhedged model, same files: RAW / sRGB | hedges chosen (mu/lambda) |")
    print("|---|---|---|---|---|---|---|")
    for work in args.works:
        for family in FAMILIES:
            rows, grid = hedge_grid({mu: cached_sweep(work, family, mu) for mu in tones})
            full = grid.index((1.0, 1.0))
            by_camera = defaultdict(list)
            for r in rows:
                by_camera[r["camera"] if args.by == "camera" else family].append(r)
            for camera, cam_rows in sorted(by_camera.items()):
                stems = sorted({_source(r) for r in cam_rows})
                if len(stems) < 3:
                    continue
                raw, srgb, base_raw, base_srgb, picks = [], [], [], [], []
                for seed in range(args.splits):
                    split = split_sources([Path(s) for s in stems], args.holdout, seed)
                    held = {p.name for p in split.held_out}
                    result, _ = choose_by_file(cam_rows, grid, {p.name for p in split.calibration}, held)
                    raw.append(result["held_out"]["raw_db"])
                    srgb.append(result["held_out"]["srgb_db"])
                    test = [r for r in cam_rows if _source(r) in held]
                    base_raw.append(np.mean([r["raw"][full] - baseline(r, "raw") for r in test]))
                    base_srgb.append(np.mean([r["srgb"][full] - baseline(r, "srgb") for r in test]))
                    picks.append(f"{result['tone_blend']:g}/{result['prior_blend']:g}")
                print(f"| {work.name} | {camera} | {len(stems)} | {np.mean(raw):+.2f}; {min(raw):+.2f} | "
                      f"{np.mean(srgb):+.2f}; {min(srgb):+.2f} | {np.mean(base_raw):+.2f} / {np.mean(base_srgb):+.2f} | "
                      f"{', '.join(picks)} |")


if __name__ == "__main__":
    main()
