"""One fuzz campaign: hypothesis generates cases for a target, an isolated worker runs them, and every
outcome is counted. A finding (an outcome other than ok / refused / usage) is shrunk by hypothesis to
a small case, recorded, and the campaign goes on with a new seed until the case budget is spent."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from fuzz.isolation import Outcome, Worker

# Address-space limits per target (MB): the CLI worker imports torch, ONNX Runtime and OpenVINO.
MEMORY_MB = {"photo": 2048, "raw": 2048, "dng": 2048, "meta": 3072, "profile": 2048, "model": 6144, "cli": 6144}
TIMEOUT_S = {"photo": 10, "raw": 10, "dng": 10, "meta": 10, "profile": 10, "model": 30, "cli": 60}


class Finding(Exception):
    def __init__(self, outcome: Outcome, case):
        super().__init__(f"{outcome.status}: {outcome.detail[-1500:]}")
        self.outcome, self.case = outcome, case


@dataclass
class Report:
    target: str
    cases: int = 0
    counts: Counter = field(default_factory=Counter)
    findings: list[dict] = field(default_factory=list)
    known: dict = field(default_factory=dict)  # signature -> first case, of problems passed as ``known``
    seconds: float = 0.0
    restarts: int = 0

    def to_dict(self) -> dict:
        return {"target": self.target, "cases": self.cases, "counts": dict(self.counts), "findings": self.findings,
                "known": [{"signature": k, "case": v} for k, v in self.known.items()],
                "seconds": round(self.seconds, 1), "worker_restarts": self.restarts}


def signature_of(outcome: Outcome) -> str:
    """What identifies a problem: its status and the last line of its detail (the exception)."""
    lines = [line for line in outcome.detail.strip().splitlines() if line.strip()]
    return f"{outcome.status}: {lines[-1][:200] if lines else ''}"


def strategy_for(target: str):
    from fuzz import strategies as s
    from fuzz.targets import available_raw_sources

    if target == "photo":
        return s.photo_cases
    if target == "raw":
        sources = available_raw_sources()
        if not sources:
            raise LookupError("the shared RAW files are not available (../shared/data/raw)")
        return s.raw_cases(sources)
    if target == "dng":
        return s.dng_cases()
    if target == "meta":
        return s.json_texts(s.meta_base()).map(lambda text: {"text": text})
    if target == "profile":
        return s.json_texts(s.profile_base()).map(lambda text: {"text": text})
    if target == "model":
        return s.model_cases
    if target == "cli":
        return s.cli_cases()
    raise KeyError(target)


def run_campaign(target: str, cases: int, seed: int = 0, worker: Worker | None = None, max_findings: int = 5,
                 progress=None, known: tuple[str, ...] = ()) -> Report:
    """Run ``cases`` generated cases of ``target`` (a few more while shrinking a finding). ``known``:
    substrings of the detail (e.g. a function in the traceback) of problems already reported: such
    outcomes are counted as "known" and the campaign goes on."""
    report = Report(target)
    own = worker is None
    worker = worker or Worker(memory_mb=MEMORY_MB[target], timeout_s=TIMEOUT_S[target])
    strategy = strategy_for(target)
    start = time.monotonic()
    try:
        round_seed = seed
        last: dict = {}
        while report.cases < cases and len(report.findings) < max_findings:
            budget = cases - report.cases
            last.clear()

            @hypothesis_seed(round_seed)
            @settings(max_examples=budget, deadline=None, database=None, print_blob=False, derandomize=False,
                      phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def check(case):
                outcome = worker.run(target, case)
                if not outcome.accepted and any(k in outcome.detail for k in known):
                    outcome = Outcome("known", outcome.detail)
                    report.known.setdefault(signature_of(outcome), case)
                report.cases += 1
                report.counts[outcome.status] += 1
                if progress is not None:
                    progress(report)
                if not outcome.accepted and outcome.status != "known":
                    last["finding"] = (outcome, case)
                    raise Finding(outcome, case)

            try:
                check()
            except Finding:
                outcome, case = last["finding"]  # the last failing run is hypothesis' shrunk example
                signature = signature_of(outcome)
                if any(f["signature"] == signature for f in report.findings):
                    break  # the same problem again: more cases would only find it again
                report.findings.append({"status": outcome.status, "signature": signature, "case": case,
                                        "detail": outcome.detail[-3000:]})
            else:
                if report.cases < cases and budget == cases - report.cases:
                    break  # hypothesis ran nothing more: the strategy's space is exhausted
            round_seed += 1
    finally:
        report.seconds = time.monotonic() - start
        report.restarts = worker.restarts
        if own:
            worker.__exit__(None, None, None)
    return report
