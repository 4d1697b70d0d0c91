"""`rawedge bench`: the same model and photo through PyTorch eager and every runtime and precision
available, each in its own subprocess (so peak RSS is that backend's alone and a crash or a missing
backend costs one row, not the run). Reports ms per megapixel, MP/s, peak RSS and the output's PSNR
against PyTorch FP32 (ONNX Runtime FP32 when there is no checkpoint).

Compute efficiency: the model's FLOPs are counted from its ONNX graph (runtimes.flops: convolutions and
matrix products, 2 FLOPs per multiply-add); a row's FLOPs are its tiles' pixels times the per-pixel
count plus the global branch once per tile run (the runtimes run it with every tile). Achieved GFLOP/s
is that over the time spent inside the runner (``compute_s``, not tiling, blending or the RAW
conversion), compared with this machine's float32 matrix-product peak measured in the same run
(``sgemm_peak_gflops``) and with PyTorch eager's row. ``startup_s``: from spawning the worker process to
an opened model (interpreter, imports, model load)."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rawedge.compare import Comparator, Tolerance
from rawedge.errors import RawedgeError

BACKENDS = ("torch", "ort", "openvino", "trt")
SKIPPED_EXIT = 3  # a worker's "this combination is not available here"


def parse_size(text: str) -> int:
    """'12mp', '0.3MP', '4000x3000' -> number of pixels."""
    t = str(text).strip().lower()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*mp", t)
    if m:
        return round(float(m.group(1)) * 1e6)
    m = re.fullmatch(r"(\d+)\s*x\s*(\d+)", t)
    if m:
        return int(m.group(1)) * int(m.group(2))
    raise RawedgeError(None, f"bad size {text!r} (use e.g. 12mp, 0.5mp or 4000x3000)")


def bench_image(srgb: np.ndarray, pixels: int) -> np.ndarray:
    """The photo mirror-tiled (no resampling, so texture stays natural) to about ``pixels`` pixels at
    its aspect ratio."""
    from rawedge.tiling import reflect_index

    h, w = srgb.shape[:2]
    scale = math.sqrt(pixels / (h * w))
    th, tw = max(2, round(h * scale)), max(2, round(w * scale))
    rows = reflect_index(np.arange(th), h) if th <= h else _mirror_tile(th, h)
    cols = reflect_index(np.arange(tw), w) if tw <= w else _mirror_tile(tw, w)
    return np.ascontiguousarray(srgb[rows[:, None], cols[None, :]])


def _mirror_tile(n: int, size: int) -> np.ndarray:
    """0..size-1, size-1..0, 0.. (edge pixels repeated at each fold: a seamless mirror tiling)."""
    i = np.arange(n) % (2 * size)
    return np.where(i < size, i, 2 * size - 1 - i)


def sgemm_peak_gflops(size: int = 2048, repeat: int = 3) -> float:
    """This machine's float32 matrix-product rate (numpy's BLAS, its default threads): best of ``repeat``
    ``size`` x ``size`` products, in GFLOP/s (2*size**3 FLOPs each)."""
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a[:64, :64], b[:64, :64])  # load the BLAS
    best = math.inf
    for _ in range(max(1, int(repeat))):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best / 1e9


def working_tile(model: str | os.PathLike) -> int | None:
    """The tile `rawedge infer` runs ``model`` at by default (runtimes.Reconstructor), so the FLOP count
    is labelled with the tiling the runs use; None where the metadata cannot be read (counted as before)."""
    from rawedge.metadata.read import read_model_metadata
    from rawedge.runtimes.reconstructor import WORK_TILE

    try:
        meta = read_model_metadata(model)
    except RawedgeError:
        return None
    return meta.static_tile or max(meta.tile, WORK_TILE)


def model_flops(model: str | os.PathLike, tile: int | None) -> dict:
    """The FLOP count of ``model`` (runtimes.flops) as a dict, or {"error": why} when it cannot be counted."""
    from rawedge.runtimes.flops import count_flops

    try:
        count = count_flops(model, tile=tile or None)
    except (RawedgeError, ImportError) as exc:
        return {"error": str(exc)}
    return {**count.to_dict(), "summary": count.summary()}


def summary_lines(result: dict) -> list[str]:
    """The compute lines of a report, for the command to print under its table."""
    lines = []
    flops = result.get("flops") or {}
    if "summary" in flops:
        lines.append(f"compute  {flops['summary']}")
    if result.get("peak_gflops"):
        lines.append(f"peak     {result['peak_gflops']:.1f} GFLOP/s ({result.get('peak_probe', '')})")
    for row in result.get("results", []):
        if row.get("status") != "ok":
            continue
        parts = [f"{row['backend']:>8} {row['precision']:<4}"]
        if row.get("achieved_gflops"):
            parts.append(f"{row['achieved_gflops']:.1f} GFLOP/s")
        if row.get("peak_fraction"):
            parts.append(f"{100 * row['peak_fraction']:.0f} % of peak")
        if row.get("vs_torch_eager"):
            parts.append(f"{row['vs_torch_eager']:.2f}x PyTorch eager")
        if row.get("startup_s") is not None:
            parts.append(f"start-up {row['startup_s']:.2f} s")
        if row.get("peak_rss_mb") is not None:
            parts.append(f"peak RSS {row['peak_rss_mb']:.0f} MB")
        lines.append("  ".join(parts))
    return lines


# --- the worker (one backend, one precision, in a subprocess) -----------------------------------------------
def _peak_rss_mb() -> float:
    """This process's own peak resident memory: VmHWM where Linux has it (ru_maxrss would include the
    parent's high-water mark, which Linux carries across fork and exec), else ru_maxrss."""
    import resource

    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024.0
    except (OSError, StopIteration, ValueError):
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / 1024.0 if sys.platform != "darwin" else kb / 2**20


def _open(case: dict):
    from rawedge.runtimes import Reconstructor

    opts = {"tile": case.get("tile"), "overlap": case.get("overlap"), "batch": case.get("batch")}
    if case["backend"] == "torch":
        from rawedge.export.torch_runner import TorchRunner

        runner = TorchRunner(case["checkpoint"], meta_from=case["model"], fp16=case["precision"] == "fp16",
                             threads=case.get("threads"))
        return Reconstructor(runner, **opts)
    return Reconstructor.open(case["model"], runtime=case["backend"], precision=case["precision"],
                              threads=case.get("threads"), confidence=False, **opts)  # as `rawedge infer` runs


def run_case(case: dict) -> dict:
    """Time one backend/precision on the image in ``case['image']`` (.npy) and save its output."""
    from rawedge.types import Exif

    start = time.perf_counter()
    rec = _open(case)
    load_s = time.perf_counter() - start
    startup_s = time.time() - case["spawned_at"] if case.get("spawned_at") else None
    image = np.load(case["image"])
    exif = Exif.from_dict(case.get("exif"))
    work = {"compute_s": 0.0, "tiles": 0, "tile_pixels": 0}
    infer = rec.runner.infer

    def counted_infer(feed, *args, **kwargs):  # time and size of every inference call
        t0 = time.perf_counter()
        out = infer(feed, *args, **kwargs)
        work["compute_s"] += time.perf_counter() - t0
        n, _, h, w = feed["srgb"].shape
        work["tiles"] += n
        work["tile_pixels"] += n * h * w
        return out

    rec.runner.infer = counted_infer
    with rec:
        rec(image[: 2 * rec.align * 8, : 2 * rec.align * 8], exif=exif)  # warm-up on a small crop
        times, runs = [], []
        for _ in range(int(case.get("repeat", 1))):
            work.update(compute_s=0.0, tiles=0, tile_pixels=0)
            start = time.perf_counter()
            raw = rec(image, exif=exif)
            times.append(time.perf_counter() - start)
            runs.append(dict(work))
    peak_rss_mb = _peak_rss_mb()  # before the comparison copy below
    np.save(case["output"], raw.normalized())
    best = min(times)
    mp = image.shape[0] * image.shape[1] / 1e6
    return {"status": "ok", "seconds": best, "ms_per_mp": 1000.0 * best / mp, "mp_per_s": mp / best,
            "times_s": times, "load_s": load_s, "startup_s": startup_s, "peak_rss_mb": peak_rss_mb,
            "tile": rec.tile, "overlap": rec.overlap, **runs[times.index(best)]}


def _worker_main(case_path: str, result_path: str) -> int:
    from rawedge.runtimes.base import Unavailable

    case = json.loads(Path(case_path).read_text())
    try:
        result, code = run_case(case), 0
    except Unavailable as exc:
        result, code = {"status": "skipped", "reason": exc.problem}, SKIPPED_EXIT
    except RawedgeError as exc:
        result, code = {"status": "failed", "reason": str(exc)}, 1
    except Exception as exc:  # noqa: BLE001 - one failed backend is one row of the report
        result, code = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}, 1
    Path(result_path).write_text(json.dumps(result))
    return code


# --- the driver ---------------------------------------------------------------------------------------------
def run_bench(model: str | os.PathLike, srgb: np.ndarray, exif, pixels: int, backends=BACKENDS,
              precisions=("fp32", "fp16", "int8"), checkpoint: str | os.PathLike | None = None,
              tile: int | None = None, overlap: int | None = None, batch: int | None = None,
              threads: int | None = None, repeat: int = 1, timeout_s: float = 3600.0, on_result=None) -> dict:
    """Run every backend x precision in a subprocess; returns the JSON-able report."""
    image = bench_image(srgb, pixels)
    h, w = image.shape[:2]
    rows = []
    flops = model_flops(model, tile if tile is not None else working_tile(model))
    peak = sgemm_peak_gflops()
    with tempfile.TemporaryDirectory(prefix="rawedge-bench-") as tmp:
        image_path = Path(tmp, "image.npy")
        np.save(image_path, image)
        del image
        base = {"model": os.fspath(model), "checkpoint": os.fspath(checkpoint) if checkpoint else None,
                "image": os.fspath(image_path), "exif": exif.to_dict() if exif else None, "tile": tile,
                "overlap": overlap, "batch": batch, "threads": threads, "repeat": repeat}
        outputs = {}
        for backend in backends:
            for precision in precisions:
                row = {"backend": backend, "precision": precision}
                if backend == "torch" and not checkpoint:
                    row.update(status="skipped", reason="no checkpoint (--checkpoint, or MODEL.pt next to the model)")
                elif backend == "torch" and precision == "int8":
                    row.update(status="skipped", reason="PyTorch eager runs fp32 (fp16 on CUDA); INT8 is a runtime artefact")
                else:
                    out_path = Path(tmp, f"{backend}-{precision}.npy")
                    row.update(_spawn({**base, "backend": backend, "precision": precision, "output": os.fspath(out_path)},
                                      tmp, timeout_s))
                    if row["status"] == "ok":
                        outputs[(backend, precision)] = out_path
                        _efficiency(row, flops, peak)
                rows.append(row)
                if on_result:
                    on_result(row)
        reference = next((k for k in (("torch", "fp32"), ("ort", "fp32")) if k in outputs), None)
        if reference:
            _accuracy(rows, outputs, reference)
    eager = next((r for r in rows if (r["backend"], r["precision"], r["status"]) == ("torch", "fp32", "ok")), None)
    for row in rows:
        if eager is not None and row["status"] == "ok":
            row["vs_torch_eager"] = eager["seconds"] / row["seconds"]
            if row.get("compute_s") and eager.get("compute_s"):
                row["vs_torch_eager_compute"] = eager["compute_s"] / row["compute_s"]
    return {"model": os.fspath(model), "checkpoint": os.fspath(checkpoint) if checkpoint else None,
            "width": w, "height": h, "megapixels": w * h / 1e6, "tile": tile, "overlap": overlap, "batch": batch,
            "threads": threads, "repeat": repeat,
            "reference": f"{reference[0]} {reference[1]}" if reference else None, "cpu_count": os.cpu_count(),
            "flops": flops, "peak_gflops": peak,
            "peak_probe": "numpy float32 2048x2048 matrix product, best of 3, BLAS default threads",
            "results": rows}


def _accuracy(rows: list[dict], outputs: dict, reference: tuple) -> None:
    """Each row's output against the reference's (memory-mapped) through rawedge.compare, with no tolerance:
    the bench reports accuracy, it does not judge it. ``psnr_db`` None: bit-identical (``identical``)."""
    comparator = Comparator({"raw": Tolerance()})
    ref = {"raw": np.load(outputs[reference], mmap_mode="r")}
    for row in rows:
        key = (row["backend"], row["precision"])
        if key in outputs:
            diff = comparator(ref, {"raw": np.load(outputs[key], mmap_mode="r")}).outputs["raw"]
            row["psnr_db"] = None if diff.identical else diff.psnr_db
            row["identical"] = diff.identical


def _efficiency(row: dict, flops: dict | None, peak: float) -> None:
    """A row's FLOPs, achieved GFLOP/s over its compute time and fraction of the measured peak."""
    if not flops or "per_pixel" not in flops or not row.get("compute_s"):
        return
    # counted at the model's tile (or --tile); per-pixel FLOPs of convolutions hardly depend on the tile size,
    # so smaller edge tiles and tile=0 are counted by their pixels
    row["flop"] = flops["per_pixel"] * row["tile_pixels"] + flops["global_flops"] * row["tiles"]
    row["achieved_gflops"] = row["flop"] / row["compute_s"] / 1e9
    row["peak_fraction"] = row["achieved_gflops"] / peak if peak else None


def _spawn(case: dict, tmp: str, timeout_s: float) -> dict:
    name = f"{case['backend']}-{case['precision']}"
    case_path, result_path = Path(tmp, f"{name}.case.json"), Path(tmp, f"{name}.result.json")
    case_path.write_text(json.dumps({**case, "spawned_at": time.time()}))
    try:
        proc = subprocess.run([sys.executable, "-m", "rawedge.bench.speed", os.fspath(case_path), os.fspath(result_path)],
                              check=False, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"timed out after {timeout_s:.0f} s"}
    if result_path.is_file():
        return json.loads(result_path.read_text())
    tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or ["no output"]
    return {"status": "failed", "reason": f"worker exited with {proc.returncode}: {tail[0]}"}


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1], sys.argv[2]))
