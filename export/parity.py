"""PyTorch-vs-exported-model check on a real photo, the way the runtimes will feed the model.

Feeds follow the runtime exactly: the photo's camera profile (``resolve_profile`` on its EXIF), the
profile's typical white balance, ``canonical_inputs`` (host-inverted ``rgb2cam``), EXIF from the photo,
the thumbnail of the whole photo (``make_thumb``), and tiles cut in RGGB phase. A dynamic model is run at
several sizes and batch sizes (tracing would bake a size into the graph; this catches it); a static-tile
model at two tile positions. Both sides run through the runners the project ships, by their Polygraphy-shaped
interface (activate / infer / deactivate): PyTorch through rawedge.export.torch_runner.TorchRunner, the
exported file through rawedge.runtimes' ONNX Runtime (and OpenVINO) runner, on the CPU.

Tolerances, on RAW normalised to [0, 1]:
  * FP32: max abs error <= 1e-4 (measured: ~1e-7, float rounding only).
  * FP16 (weights and activations in half precision, inputs/outputs float32): PSNR >= 60 dB against
    PyTorch FP32. Half precision has an 11-bit mantissa, i.e. a relative step of 2^-11 = 4.9e-4; errors
    of that order on values up to 1 give ~70 dB; measured on every registry model (default configs,
    ONNX Runtime and OpenVINO): 69-80 dB, ParamISP lowest (its EXIF/histogram branch).
    60 dB (RMS error 1e-3, a tenth of a 10-bit RAW code) stays far above what the models themselves
    achieve against real RAW (35-50 dB in the papers), so FP16 does not change their quality.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rawedge.compare import Comparator, Tolerance
from rawedge.contract import INPUT_NAMES, OUTPUT_RAW, canonical_inputs, make_thumb
from rawedge.errors import RawedgeError
from rawedge.metadata.schema import ModelMeta
from rawedge.metrics import PSNR_CAP_DB

FP32_MAX_ABS = 1e-4
FP16_MIN_PSNR_DB = 60.0
SAMPLE_PHOTO = Path(__file__).resolve().parents[1] / "samples" / "boxes_s40.jpg"
# (label, batch, height, width) of the dynamic-model cases; sizes are rounded up to the model's align.
DYNAMIC_CASES = (("crop", 1, 256, 384), ("tile", 1, 128, 128), ("batch", 2, 96, 160))


@dataclass
class CheckPhoto:
    srgb: np.ndarray  # HxWx3 float32 [0, 1]
    exif_vector: np.ndarray  # float32[4]
    cfa_origin: tuple[int, int]  # (dy, dx) of a red site: tiles start there, in RGGB phase
    canonical: dict  # wb, cam2rgb, rgb2cam (batch of 1)
    thumb: np.ndarray  # 3x256x256
    name: str
    profile: str


def synthetic_photo(height: int = 600, width: int = 800) -> np.ndarray:
    """A deterministic test card for installs without the sample photo: gradients, colour patches,
    highlights and fine texture, so every part of a model is exercised."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([xx / width, yy / height, 0.5 + 0.5 * np.sin(xx / 23.0) * np.cos(yy / 17.0)], axis=-1)
    rgb[height // 3: height // 2, width // 4: width // 2] = (0.9, 0.2, 0.1)
    rgb[height // 2: 2 * height // 3, width // 2: 3 * width // 4] = 1.0
    rgb += np.random.default_rng(0).normal(0, 0.02, rgb.shape).astype(np.float32)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def load_check_photo(photo: str | Path | None = None, log=None) -> CheckPhoto:
    from rawedge.io.photo import read_photo
    from rawedge.isp.ops import cfa_offsets
    from rawedge.profiles import resolve_profile
    from rawedge.types import Exif

    if photo is None and SAMPLE_PHOTO.is_file():
        photo = SAMPLE_PHOTO
    if photo is None:
        if log:
            log(f"check photo {SAMPLE_PHOTO.name} not installed: using a synthetic test card (--photo to choose)")
        srgb, exif, name = synthetic_photo(), Exif(), "synthetic test card"
    else:
        p = read_photo(photo)
        srgb, exif, name = p.to_float(), p.exif, Path(photo).name
    profile, gains, _how = resolve_profile(exif)
    gains = profile.typical_wb_gains() if gains is None else gains
    return CheckPhoto(srgb=srgb, exif_vector=exif.to_vector(), cfa_origin=cfa_offsets(profile.cfa)["R"],
                      canonical=canonical_inputs(profile.cam2rgb(), gains), thumb=make_thumb(srgb),
                      name=name, profile=profile.name)


def _round_up(v: int, align: int) -> int:
    return -(-v // align) * align


def _crop(photo: CheckPhoto, top: int, left: int, h: int, w: int) -> np.ndarray:
    """3xHxW crop starting at an RGGB-phase position; the photo is mirrored where it is too small."""
    dy, dx = photo.cfa_origin
    img = photo.srgb
    need_h, need_w = dy + top + h, dx + left + w
    if need_h > img.shape[0] or need_w > img.shape[1]:
        img = np.pad(img, ((0, max(0, need_h - img.shape[0])), (0, max(0, need_w - img.shape[1])), (0, 0)),
                     mode="symmetric")
    tile = img[dy + top: dy + top + h, dx + left: dx + left + w]
    return np.ascontiguousarray(tile.transpose(2, 0, 1), dtype=np.float32)


def _feed(photo: CheckPhoto, tiles: list[np.ndarray]) -> dict[str, np.ndarray]:
    n = len(tiles)
    feed = {"srgb": np.stack(tiles), "thumb": np.repeat(photo.thumb[None], n, axis=0),
            "exif": np.repeat(photo.exif_vector[None], n, axis=0)}
    for key, value in photo.canonical.items():
        feed[key] = np.repeat(value, n, axis=0)
    return {k: np.ascontiguousarray(feed[k], dtype=np.float32) for k in INPUT_NAMES}


def cases(photo: CheckPhoto, align: int, static_tile: int | None = None) -> list[tuple[str, dict]]:
    """(label, feed) pairs: several sizes and batches for a dynamic model, two positions for a static one."""
    h_img, w_img = photo.srgb.shape[:2]

    def centre(h, w):  # an even offset near the middle, so the tile sees real content
        return max(0, (h_img - h) // 4 * 2), max(0, (w_img - w) // 4 * 2)

    out = []
    if static_tile is not None:
        t = static_tile
        for label, (top, left) in (("tile@centre", centre(t, t)), ("tile@origin", (0, 0))):
            out.append((f"{label} 1x{t}x{t}", _feed(photo, [_crop(photo, top, left, t, t)])))
        return out
    for label, n, h, w in DYNAMIC_CASES:
        h, w = _round_up(h, align), _round_up(w, align)
        top, left = centre(h, w)
        tiles = [_crop(photo, top, left, h, w), _crop(photo, 0, 0, h, w)][:n]
        out.append((f"{label} {n}x{h}x{w}", _feed(photo, tiles)))
    return out


def torch_runner(model, metadata: ModelMeta | None = None):
    """The in-memory PyTorch model as a runner, on the CPU (``metadata``: the export's, when built already)."""
    from rawedge.export.torch_runner import TorchRunner

    return TorchRunner.from_model(model, device="cpu", metadata=metadata)


def ort_runner(path, metadata: ModelMeta | None = None):
    """ONNX Runtime on the CPU over an exported file (.onnx or .ort)."""
    from rawedge.runtimes.ort import OrtRunner

    return OrtRunner(path, providers=["cpu"], metadata=metadata)


def openvino_runner(path, metadata: ModelMeta | None = None):
    """OpenVINO CPU over an exported file, forced to FP32 inference (the CPU plugin may otherwise pick
    bf16 on new CPUs), with no compiled-model cache (the file is a staged copy)."""
    from rawedge.runtimes.openvino import OpenVinoRunner

    return OpenVinoRunner(path, device="CPU", precision="fp32", cache_dir=False, metadata=metadata)


def reference(model, check_cases, metadata: ModelMeta | None = None) -> list[dict[str, np.ndarray]]:
    """PyTorch outputs of every case (computed once, compared with each backend)."""
    with torch_runner(model, metadata) as runner:
        return [runner.infer(feed) for _label, feed in check_cases]


def tolerances(precision: str, output_names) -> dict[str, Tolerance]:
    """FP32: every output within FP32_MAX_ABS; FP16: the RAW output at FP16_MIN_PSNR_DB or more, the other
    outputs reported only (their scale is the model's own, not [0, 1])."""
    if precision == "fp32":
        return {name: Tolerance(max_abs=FP32_MAX_ABS) for name in output_names}
    return {name: Tolerance(min_psnr_db=FP16_MIN_PSNR_DB) if name == OUTPUT_RAW else Tolerance()
            for name in output_names}


def compare(runner, check_cases, expected_list, backend: str, precision: str) -> dict:
    """Run every case through ``runner`` (a rawedge runner, activated here and deactivated when done) and
    compare with the PyTorch outputs. A case's ``psnr_db`` (RAW output) is None at rawedge.metrics'
    PSNR_CAP_DB (float rounding: nothing to report)."""
    with runner:
        outputs = [runner.infer(feed) for _label, feed in check_cases]
    results = []
    for (label, feed), expected, got in zip(check_cases, expected_list, outputs):
        comparison = Comparator(tolerances(precision, expected))(expected, got)
        broken = next((d for d in comparison.outputs.values() if d.max_abs is None), None)
        if broken is not None:
            raise RawedgeError(None, f"{backend} against PyTorch: output {broken}")
        raw = comparison.outputs[OUTPUT_RAW].psnr_db
        results.append({"case": label, "shape": list(feed["srgb"].shape),
                        "max_abs": max(d.max_abs for d in comparison.outputs.values()),
                        "psnr_db": None if raw >= PSNR_CAP_DB else raw,
                        "outputs": {name: d.max_abs for name, d in comparison.outputs.items()},
                        "comparison": comparison})
    finite = [r["psnr_db"] for r in results if r["psnr_db"] is not None]
    return {"backend": backend, "precision": precision, "cases": results,
            "max_abs": max(r["max_abs"] for r in results),
            "min_psnr_db": min(finite) if finite else None,
            "tolerance": ({"max_abs": FP32_MAX_ABS} if precision == "fp32" else {"min_psnr_db": FP16_MIN_PSNR_DB})}


def require(result: dict, source) -> None:
    """RawedgeError naming the worst case and its failing output when a check is outside its tolerance."""
    failed = [(r["case"], d) for r in result["cases"] for d in r["comparison"].failed]
    if not failed:
        return
    if "max_abs" in result["tolerance"]:
        case, worst = max(failed, key=lambda f: f[1].max_abs)
        raise RawedgeError(source, f"{result['backend']} differs from PyTorch by {worst.max_abs:.3g} in output "
                                   f"{worst.name!r} (case {case}; {'; '.join(worst.failures)})")
    case, worst = min(failed, key=lambda f: f[1].psnr_db)
    raise RawedgeError(source, f"{result['backend']} {result['precision']} differs from PyTorch in output "
                               f"{worst.name!r} (case {case}; {'; '.join(worst.failures)})")


def format_result(result: dict) -> list[str]:
    """One line per case, as printed by ``rawedge export``."""
    lines = []
    for r in result["cases"]:
        p = f">= {PSNR_CAP_DB:g} dB" if r["psnr_db"] is None else f"{r['psnr_db']:.1f} dB"
        lines.append(f"  {result['backend']:<22} {result['precision']}  {r['case']:<20} max abs {r['max_abs']:.2e}  "
                     f"PSNR {p}")
    return lines

