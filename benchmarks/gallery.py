"""README gallery: input JPEG, the model's reconstruction rendered back to sRGB, and RAW error maps
(model and analytic inverse) on held-out shared RAW files.

    python benchmarks/gallery.py --model rawedge/assets/default.onnx --data data/pairs -o docs/gallery.png
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from rawedge.io.raw import read_raw
from rawedge.io.render import render_raw
from rawedge.isp.ops import pack
from rawedge.isp.pipeline import process, unprocess
from rawedge.profiles import resolve_profile
from rawedge.runtimes import Reconstructor


def jpeg_round_trip(srgb: np.ndarray, quality: int = 92) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(srgb).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def heat(err: np.ndarray, vmax: float) -> np.ndarray:
    """Error map (HxW, >= 0) to a uint8 RGB heat map (black -> red -> yellow -> white)."""
    t = np.clip(err / vmax, 0, 1)
    rgb = np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], -1)
    return (rgb * 255).astype(np.uint8)


def psnr(a, b) -> float:
    return float(-10 * np.log10(np.mean((a - b) ** 2) + 1e-12))


def held_out_raws(data_dir: Path) -> list[tuple[str, str]]:
    """(source RAW, camera) of the validation split's LibRaw pairs: files no model was trained on."""
    manifest = json.loads((data_dir / "manifest.json").read_text())
    return sorted({(s["source"], s["camera"]) for s in manifest["samples"] if s["split"] == "val" and s["kind"] == "libraw"})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="data folder from `rawedge data prepare` (for the val split)")
    ap.add_argument("--raw-dir", default="../shared/data/raw")
    ap.add_argument("--count", type=int, default=3)
    ap.add_argument("--width", type=int, default=320, help="width of each panel")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args(argv)
    sources = held_out_raws(Path(args.data))
    # one file per camera first
    picked, cams = [], set()
    for s, cam in sources:
        if cam not in cams:
            picked.append(s)
            cams.add(cam)
    picked = picked[: args.count]
    rows = []
    rec = Reconstructor.open(args.model, runtime="ort")
    for src in picked:
        path = Path(src) if Path(src).is_file() else Path(args.raw_dir) / Path(src).name
        raw = read_raw(path)
        srgb = jpeg_round_trip(render_raw(path))
        gt = raw.normalized()
        out = rec(srgb, exif=raw.exif)
        pred = out.normalized()
        profile, _, _ = resolve_profile(raw.exif)
        gains = profile.typical_wb_gains()
        ana = unprocess(srgb.astype(np.float32) / 255, profile, gains)
        shown = process(pred, raw.cfa, gains, profile.cam2rgb())
        h, w = gt.shape
        h2, w2 = h - h % 2, w - w % 2
        e_model = np.abs(pack(pred[:h2, :w2], raw.cfa) - pack(gt[:h2, :w2], raw.cfa)).mean(0)
        e_ana = np.abs(pack(ana[:h2, :w2], raw.cfa) - pack(gt[:h2, :w2], raw.cfa)).mean(0)
        vmax = max(np.percentile(e_ana, 99), 1e-3)
        panels = [srgb, (np.clip(shown, 0, 1) * 255).astype(np.uint8), heat(e_ana, vmax), heat(e_model, vmax)]
        size = (args.width, int(args.width * h / w))
        rows.append(np.concatenate([np.asarray(Image.fromarray(p).resize(size, Image.BILINEAR)) for p in panels], 1))
        print(f"{path.name}: RAW PSNR model {psnr(pred, gt):.2f} dB, analytic {psnr(ana, gt):.2f} dB "
              f"(profile {profile.name}, typical WB)")
    rec.close()
    width = max(r.shape[1] for r in rows)
    grid = np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows], 0)
    Image.fromarray(grid).save(args.output)
    print(f"wrote {args.output}: columns = input JPEG | model reconstruction (rendered by our ISP) | "
          f"analytic |RAW error| | model |RAW error| (same colour scale per row)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
