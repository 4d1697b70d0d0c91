"""Render -> unprocess -> render on a folder of RAW files: how close the analytic reverse ISP gets.

For each file: LibRaw renders the RAW (``rawedge render`` settings), the analytic reverse ISP turns the
rendering back into a mosaic (with the file's own profile and as-shot WB, as ``--like`` does), the
mosaic is written as a DNG and rendered again by LibRaw. Prints RAW PSNR (normalized mosaic vs the
true one) and sRGB PSNR (second rendering vs first).

    python benchmarks/analytic_roundtrip.py ../shared/data/raw -o analytic_roundtrip.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from rawedge.filekinds import RAW_SUFFIXES
from rawedge.io.dng import write_dng
from rawedge.io.raw import read_raw
from rawedge.io.render import render_raw
from rawedge.isp.pipeline import unprocess
from rawedge.metrics import psnr
from rawedge.types import RawImage


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("raw_dir")
    ap.add_argument("-o", "--output")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(p for p in Path(args.raw_dir).iterdir() if p.suffix.lower() in RAW_SUFFIXES):
            raw = read_raw(path)
            first = render_raw(path).astype(np.float32) / 255.0
            mosaic = unprocess(first, raw.profile, raw.wb_gains())
            dng = os.path.join(tmp, "roundtrip.dng")
            write_dng(dng, RawImage.from_normalized(mosaic, raw.profile, raw.wb_gains(), raw.exif))
            second = render_raw(dng).astype(np.float32) / 255.0
            row = {"file": path.name, "camera": raw.profile.name, "raw_psnr": psnr(mosaic, raw.normalized()),
                   "srgb_psnr": psnr(second, first)}
            rows.append(row)
            print(f"{row['file']:40s} RAW {row['raw_psnr']:6.2f} dB   sRGB {row['srgb_psnr']:6.2f} dB", flush=True)
    by_cam: dict[str, list] = {}
    for r in rows:
        by_cam.setdefault(r["camera"], []).append(r)
    summary = {cam: {"files": len(rs), "raw_psnr": float(np.mean([r["raw_psnr"] for r in rs])),
                     "srgb_psnr": float(np.mean([r["srgb_psnr"] for r in rs]))} for cam, rs in by_cam.items()}
    for cam, s in summary.items():
        print(f"mean {cam:40s} RAW {s['raw_psnr']:6.2f} dB   sRGB {s['srgb_psnr']:6.2f} dB  ({s['files']} files)")
    if args.output:
        Path(args.output).write_text(json.dumps({"files": rows, "per_camera": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
