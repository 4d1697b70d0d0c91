"""A folder of photos: seconds per photo one command at a time, against one `rawedge infer DIR` run (one
model open, decoding and writing overlapped with the model: rawedge.convert.convert_photos), and the
same batch in-process without the overlap (one photo after another).

    python benchmarks/batch_throughput.py --count 100 -o benchmarks/results/batch_throughput.json

Photos: the 24 Kodak test images (../shared/data/photos/kodak, 768x512), repeated to --count and saved
as JPEGs with a Canon PowerShot S40's EXIF (so every photo gets a camera profile, as a camera's would).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "photos" / "kodak"
SAMPLE = ROOT / "samples" / "boxes_s40.jpg"


def make_photos(folder: Path, count: int) -> list[Path]:
    from PIL import Image

    exif = Image.open(SAMPLE).info.get("exif")
    sources = sorted(KODAK.glob("*.png"))
    paths = []
    for i in range(count):
        path = folder / f"p{i:03d}.jpg"
        Image.open(sources[i % len(sources)]).convert("RGB").save(path, quality=92, exif=exif)
        paths.append(path)
    return paths


def cli(*args) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rawedge.cli", *map(str, args)], check=True, capture_output=True)
    return time.perf_counter() - start


def in_process(photos: list[Path], out: Path, runtime: str, pipelined: bool) -> float:
    from rawedge.runtimes import Reconstructor

    from rawedge.convert import convert_photo, convert_photos

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    jobs = [(p, out / f"{p.stem}.dng") for p in photos]
    with Reconstructor.open(ROOT / "rawedge" / "assets" / "default.onnx", runtime=runtime) as rec:
        start = time.perf_counter()
        if pipelined:
            failed = [r for _, r in convert_photos(rec, jobs, "dng") if isinstance(r, Exception)]
            if failed:
                raise failed[0]
        else:
            for photo, target in jobs:
                convert_photo(rec, photo, target, "dng")
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--single", type=int, default=5, help="photos converted one command at a time")
    parser.add_argument("--runtime", default="ort")
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        photos = make_photos(tmp / "in", args.count)
        single = [cli("infer", "--runtime", args.runtime, p, "-o", tmp / f"single{i}.dng")
                  for i, p in enumerate(photos[:args.single])]
        batch = cli("infer", "--runtime", args.runtime, tmp / "in", "-o", f"{tmp / 'batch'}{os.sep}")
        sequential = in_process(photos, tmp / "seq", args.runtime, pipelined=False)
        pipelined = in_process(photos, tmp / "pipe", args.runtime, pipelined=True)
    n = args.count
    result = {"photos": n, "size": "768x512 (Kodak)", "runtime": args.runtime, "cpus": os.cpu_count(),
              "s_per_photo": {"one command per photo (median)": sorted(single)[len(single) // 2],
                              "rawedge infer DIR": batch / n,
                              "in-process, one photo after another": sequential / n,
                              "in-process, pipelined (convert_photos)": pipelined / n}}
    text = json.dumps(result, indent=1)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
