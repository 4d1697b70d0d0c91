"""Reference benchmarks: `rawedge bench` at 12 and 48 MP on a model, written to benchmarks/results/.

    python benchmarks/run_benchmarks.py --checkpoint model.pt            # export it, then bench
    python benchmarks/run_benchmarks.py --random unet --config width=4,depth=2   # random weights:
                                                                           # speed/memory only

Random weights measure speed and memory (the work does not depend on the weights); PSNR between
backends is still meaningful (same weights everywhere). Each size/backend runs in its own process.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def random_checkpoint(name: str, config: dict, out: Path) -> Path:
    import torch

    from rawedge.models.checkpoint import save_checkpoint
    from rawedge.models.registry import create_model

    torch.manual_seed(0)
    model = create_model(name, **config)
    for p in model.parameters():  # heads initialised at zero would make every backend output the prior
        if p.dim() > 1 and not p.abs().sum():
            torch.nn.init.normal_(p, std=0.1)
    save_checkpoint(out, model)
    return out


def parse_config(text: str) -> dict:
    out = {}
    for item in filter(None, text.split(",")):
        key, value = item.split("=")
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out


def markdown(report: dict) -> str:
    lines = [f"### {Path(report['model']).name}: {report['width']}x{report['height']} "
             f"({report['megapixels']:.1f} MP), PSNR vs {report['reference']}", "",
             "| runtime | precision | ms/MP | MP/s | peak RSS MB | PSNR dB |", "|---|---|---:|---:|---:|---:|"]
    for r in report["results"]:
        if r["status"] != "ok":
            continue
        psnr = "identical" if r.get("identical") else ("-" if r.get("psnr_db") is None else f"{r['psnr_db']:.1f}")
        lines.append(f"| {r['backend']} | {r['precision']} | {r['ms_per_mp']:.0f} | {r['mp_per_s']:.2f} | "
                     f"{r['peak_rss_mb']:.0f} | {psnr} |")
    skipped = [f"{r['backend']} {r['precision']}" for r in report["results"] if r["status"] != "ok"]
    if skipped:
        lines += ["", f"Not run here: {', '.join(skipped)} (reasons in the JSON)."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--random", default="unet", help="registry model with random weights (no --checkpoint)")
    ap.add_argument("--config", default="", help="model config for --random, e.g. width=4,depth=2")
    ap.add_argument("--sizes", default="12mp,48mp")
    ap.add_argument("--runtimes", default="torch,ort,openvino,trt")
    ap.add_argument("--precisions", default="fp32,fp16,int8")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rawedge-benchmarks-") as tmp:
        ckpt = args.checkpoint or random_checkpoint(args.random, parse_config(args.config), Path(tmp, "model.pt"))
        model = Path(tmp, "model.onnx")
        from rawedge.export import export_checkpoint

        export_checkpoint(ckpt, model, check=False)
        if "fp16" in args.precisions:  # ONNX Runtime's FP16 is this file (OpenVINO/TensorRT convert themselves)
            export_checkpoint(ckpt, model.with_name("model.fp16.onnx"), check=False, fp16=True)
        sections = [f"Machine: {platform.processor() or platform.machine()}, {platform.system()}, "
                    f"Python {platform.python_version()}; threads {args.threads or 'all'}; "
                    f"model {ckpt.name if args.checkpoint else f'{args.random} {args.config} (random weights)'}."]
        for size in args.sizes.split(","):
            json_path = args.out / f"bench-{size}.json"
            cmd = [sys.executable, "-m", "rawedge.cli", "bench", "--model", str(model), "--checkpoint", str(ckpt),
                   "--size", size, "--runtimes", args.runtimes, "--precisions", args.precisions,
                   "--repeat", str(args.repeat), "-o", str(json_path)] + (
                   ["--threads", str(args.threads)] if args.threads else [])
            subprocess.run(cmd, check=True)
            sections.append(markdown(json.loads(json_path.read_text())))
    (args.out / "RESULTS.md").write_text("\n\n".join(sections) + "\n")
    print((args.out / "RESULTS.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
