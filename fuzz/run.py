"""The long fuzz run (`make fuzz`): N generated cases per target, each in an isolated worker with a memory
limit and a time bound; prints a table of outcomes and writes a JSON report. Exit status 1 when any
target has a finding (an outcome other than ok / refused by RawedgeError / click usage error).

    python -m fuzz.run                                  # 10,000 cases for each target
    python -m fuzz.run --cases 500 --targets raw,cli    # a quicker look
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

TARGETS = ("photo", "raw", "dng", "meta", "profile", "model", "cli")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="generated cases per target (default 10000)")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated ({', '.join(TARGETS)})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", default="runs/fuzz/report.json", help="JSON report to write")
    parser.add_argument("--known", action="append", default=[], metavar="TEXT",
                        help="count outcomes whose detail contains TEXT (e.g. a function name in the traceback) "
                             "as known, already reported problems, and go on (repeatable)")
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {', '.join(unknown)}")

    from fuzz.campaign import MEMORY_MB, TIMEOUT_S, run_campaign

    reports = []
    for target in targets:
        progress = _progress_printer(target)
        print(f"{target}: {args.cases} cases, worker limit {MEMORY_MB[target]} MB, {TIMEOUT_S[target]} s per case",
              flush=True)
        try:
            report = run_campaign(target, args.cases, seed=args.seed, progress=progress, known=tuple(args.known))
        except LookupError as exc:
            print(f"  skipped: {exc}", flush=True)
            continue
        reports.append(report)
        print(f"  done: {report.cases} cases in {report.seconds:.0f} s {dict(report.counts)}, "
              f"{len(report.findings)} finding(s)", flush=True)
        for f in report.findings:
            print(f"  FINDING {f['signature']}\n    case: {f['case']!r}"[:2000], flush=True)
        for signature, case in report.known.items():
            print(f"  known: {signature}\n    first case: {case!r}"[:1000], flush=True)

    print(f"\n{'target':<8} {'cases':>7} {'ok':>7} {'refused':>8} {'usage':>7} {'known':>6} {'other':>6} {'s':>6}")
    for r in reports:
        other = r.cases - sum(r.counts.get(k, 0) for k in ("ok", "refused", "usage", "known"))
        print(f"{r.target:<8} {r.cases:>7} {r.counts.get('ok', 0):>7} {r.counts.get('refused', 0):>8} "
              f"{r.counts.get('usage', 0):>7} {r.counts.get('known', 0):>6} {other:>6} {r.seconds:>6.0f}")
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps({"cases_per_target": args.cases, "seed": args.seed,
                                             "targets": [r.to_dict() for r in reports]}, indent=1, default=repr))
    print(f"report: {args.report}")
    return 1 if any(r.findings for r in reports) else 0


def _progress_printer(target: str, every_s: float = 30.0):
    last = [0.0]

    def progress(report):
        now = time.monotonic()
        if now - last[0] > every_s:
            last[0] = now
            print(f"  {target}: {report.cases} cases {dict(report.counts)}", flush=True)

    return progress


if __name__ == "__main__":
    sys.exit(main())
