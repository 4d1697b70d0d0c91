"""README gallery: input JPEG, the model's reconstruction rendered back to sRGB, and RAW error maps
(model and analytic inverse) on held-out shared RAW files.

    python benchmarks/gallery.py --model rawedge/assets/default.onnx --data data/pairs -o docs/gallery.png
    python benchmarks/gallery.py --fold runs/lofo-e/fold-gopro/run/hedged-0.9.onnx runs/lofo-e/fold-gopro/eval \
        --fold ... --kind libraw_default --kind engine --count 0 -o docs/gallery.png

``--fold MODEL DATA`` (repeatable) shows each leave-one-family-out fold's model on the family it never saw
(benchmarks/lofo.py), the honest view of a model trained on every shared file.

Rows: validation pairs of the evaluation (a camera's own JPEG preview and LibRaw renderings with random
WB, brightness and curve), the central --crop of each, then one plain `rawedge render` of a held-out
file (brightness 1, the camera's WB: the case the analytic inverse inverts almost exactly).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from rawedge.runtimes import Reconstructor

from rawedge.io.raw import read_raw
from rawedge.io.render import render_raw
from rawedge.isp.ops import pack
from rawedge.isp.pipeline import process, unprocess
from rawedge.metrics import psnr
from rawedge.profiles import resolve_profile


def jpeg_round_trip(srgb: np.ndarray, quality: int = 92) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(srgb).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def heat(err: np.ndarray, vmax: float) -> np.ndarray:
    """Error map (HxW, >= 0) to a uint8 RGB heat map (black -> red -> yellow -> white)."""
    t = np.clip(err / vmax, 0, 1)
    rgb = np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], -1)
    return (rgb * 255).astype(np.uint8)


def held_out_raws(data_dir: Path) -> list[tuple[str, str]]:
    """(source RAW, camera) of the validation split's LibRaw pairs: files no model was trained on."""
    manifest = json.loads((data_dir / "manifest.json").read_text())
    return sorted({(s["source"], s["camera"]) for s in manifest["samples"] if s["split"] == "val" and s["kind"] == "libraw"})


def pair_rows(model_path: str, data_dir: Path, per_kind: dict[str, int], crop: int, width: int,
              seen: set | None = None) -> list[np.ndarray]:
    """Rows for validation pairs: the model through ONNX Runtime on the central crop, the analytic inverse
    on the same contract inputs (its WB and matrix), errors on the packed RGGB target."""
    import onnxruntime as ort
    import torch

    from rawedge.contract import INPUT_NAMES
    from rawedge.data.dataset import PairDataset
    from rawedge.losses.edit_aware import fixed_edits, render_edit
    from rawedge.models.registry import create_model

    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    analytic = create_model("analytic").eval()
    rows, seen = [], set() if seen is None else seen
    for kind, count in per_kind.items():
        ds = PairDataset(data_dir, "val", crop=None, kinds=[kind])
        for j, sample in enumerate(ds.samples):
            if count <= 0 or (sample.camera, kind) in seen:
                continue
            item = ds.full_item(j, center_crop=crop)
            h, w = (item["srgb"].shape[1] // 16) * 16, (item["srgb"].shape[2] // 16) * 16
            item = {**item, "srgb": item["srgb"][:, :h, :w], "raw": item["raw"][:, :h // 2, :w // 2]}
            feed = {k: item[k][None].numpy() for k in INPUT_NAMES}
            pred = torch.from_numpy(sess.run(None, feed)[0])
            with torch.no_grad():
                ana = analytic(**{k: item[k][None] for k in INPUT_NAMES})["raw"]
                shown = render_edit(pred, item["wb"][None], item["cam2rgb"][None], fixed_edits()[0])
            gt = item["raw"][None]
            e_model, e_ana = ((p - gt).abs().mean(1)[0].numpy() for p in (pred, ana))
            vmax = max(np.percentile(e_ana, 99), 1e-3)
            srgb = (item["srgb"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            panels = [srgb, (shown[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8),
                      heat(e_ana, vmax), heat(e_model, vmax)]
            rows.append(_row(panels, width))
            print(f"{sample.id} ({kind}, {sample.camera}): RAW PSNR model {psnr(pred.numpy(), gt.numpy()):.2f} dB, "
                  f"analytic {psnr(ana.numpy(), gt.numpy()):.2f} dB")
            seen.add((sample.camera, kind))
            count -= 1
    return rows


def _row(panels: list[np.ndarray], width: int) -> np.ndarray:
    h, w = panels[0].shape[:2]
    size = (width, int(width * h / w))
    return np.concatenate([np.asarray(Image.fromarray(p).resize(size, Image.BILINEAR)) for p in panels], 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model for --data and the plain renderings")
    ap.add_argument("--data", help="data folder from `rawedge data prepare` (for the val split)")
    ap.add_argument("--fold", nargs=2, action="append", default=[], metavar=("MODEL", "DATA"),
                    help="a fold's model and the held-out family's renderings it never saw (repeatable)")
    ap.add_argument("--kind", action="append", help="kinds of --fold pairs to show (default libraw)")
    ap.add_argument("--raw-dir", default="../shared/data/raw")
    ap.add_argument("--count", type=int, default=1, help="plain renderings (one per camera)")
    ap.add_argument("--camera-jpeg", type=int, default=1, help="validation camera-JPEG pairs")
    ap.add_argument("--libraw", type=int, default=2, help="validation LibRaw-rendering pairs")
    ap.add_argument("--crop", type=int, default=768, help="central crop of the validation pairs")
    ap.add_argument("--width", type=int, default=320, help="width of each panel")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args(argv)
    if not args.fold and not (args.model and args.data):
        ap.error("give --model and --data, or --fold MODEL DATA")
    rows = []
    for model, data in args.fold:  # one row per camera and kind of the family the fold never saw
        rows += pair_rows(model, Path(data), {k: 9 for k in args.kind or ["libraw"]}, args.crop, args.width)
    if not args.model:
        return save_grid(rows, args.output)
    sources = held_out_raws(Path(args.data))
    # one file per camera first
    picked, cams = [], set()
    for s, cam in sources:
        if cam not in cams:
            picked.append(s)
            cams.add(cam)
    picked = picked[: args.count]
    rows += pair_rows(args.model, Path(args.data), {"camera_jpeg": args.camera_jpeg, "libraw": args.libraw},
                      args.crop, args.width)
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
        rows.append(_row(panels, args.width))
        print(f"{path.name} (plain rawedge render): RAW PSNR model {psnr(pred, gt):.2f} dB, analytic {psnr(ana, gt):.2f} dB "
              f"(profile {profile.name}, typical WB)")
    rec.close()
    return save_grid(rows, args.output)


def save_grid(rows: list[np.ndarray], output: str) -> int:
    width = max(r.shape[1] for r in rows)
    grid = np.concatenate([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows], 0)
    Image.fromarray(grid).save(output)
    print(f"wrote {output}: columns = input JPEG | model reconstruction (rendered by our ISP) | "
          f"analytic |RAW error| | model |RAW error| (same colour scale per row)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
