"""How much INT8 changes correlate with the model's own error: the number the calibration gate's drop
bound without ground truth rests on (calibration.gate.CORRELATION_BOUND).

    python benchmarks/int8_correlation.py -o docs/int8/correlation.json

For every RAW file of ../shared/data/raw and raw-gopro (rendered by LibRaw, so its mosaic is the truth),
the bundled model runs through the Reconstructor three times: ONNX Runtime FP32 and the two bundled INT8
artefacts (ONNX Runtime, OpenVINO). With e = FP32 - truth and d = INT8 - FP32 (normalised mosaics):
rho = <e, d> / (|e| |d|), r = |d| / |e|, the real drop 10 log10(|e + d|^2 / |e|^2) =
10 log10(1 + r^2 + 2 rho r), and the triangle bound 20 log10(1 + r) the gate used before.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from rawedge.calibration.dataset import Tiling, is_raw, load_item, plan_item
from rawedge.calibration.gate import drop_bound
from rawedge.runtimes.factory import open_runner

from rawedge.metrics import psnr_from_mse

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
MODEL = ROOT / "rawedge" / "assets" / "default.onnx"
VARIANTS = {"ort_int8": ("ort", "int8"), "openvino_int8": ("openvino", "int8")}


def reconstruct(runner, item) -> np.ndarray:
    rec, plan = plan_item(runner, item, Tiling())
    return rec.reconstruct(plan).normalized().astype(np.float64).ravel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "int8" / "correlation.json")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    files = sorted(p for d in ("raw", "raw-gopro") for p in (SHARED / d).iterdir() if is_raw(p))
    reference = open_runner(MODEL, "ort", "fp32", threads=args.threads)
    variants = {k: open_runner(MODEL, rt, prec, threads=args.threads) for k, (rt, prec) in VARIANTS.items()}
    for runner in (reference, *variants.values()):
        runner.activate()
    rows = []
    for path in files:
        item = load_item(path)
        truth = item.truth.normalized().astype(np.float64).ravel()
        fp32 = reconstruct(reference, item)
        e = fp32 - truth
        psnr_fp32 = psnr_from_mse(float(e @ e) / e.size)
        row = {"file": path.name, "psnr_fp32_db": psnr_fp32}
        for name, runner in variants.items():
            d = reconstruct(runner, item) - fp32
            rho = float(e @ d) / math.sqrt(float(e @ e) * float(d @ d))
            r = math.sqrt(float(d @ d) / float(e @ e))
            psnr_vs_fp32 = psnr_from_mse(float(d @ d) / d.size)
            row[name] = {"psnr_vs_fp32_db": psnr_vs_fp32, "rho": rho, "r": r,
                         "drop_db": psnr_fp32 - psnr_from_mse(float((e + d) @ (e + d)) / e.size),
                         "triangle_bound_db": drop_bound(psnr_vs_fp32, psnr_fp32)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {name: {"rho_max": max(r[name]["rho"] for r in rows),
                      "rho_p90": float(np.percentile([r[name]["rho"] for r in rows], 90)),
                      "drop_max_db": max(r[name]["drop_db"] for r in rows)} for name in VARIANTS}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"model": MODEL.name, "files": len(rows), "summary": summary, "images": rows},
                                      indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
