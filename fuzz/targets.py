"""What each fuzz target does with one case, inside the worker (fuzz.isolation). A target returns
``(status, detail)`` with status ``ok`` (accepted and every invariant holds), ``refused`` (a clear
RawedgeError) or ``usage`` (a click usage error, exit 2); anything else it raises is a finding.

Cases are plain data made by fuzz.strategies (picklable, shrinkable): byte mutations of real files,
JSON text, EXIF tag values, DNG field values, command lines with placeholders for prepared files."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

from rawedge.errors import RawedgeError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "boxes_s40.jpg"
# Small real RAW files (CC0, ../shared/data/raw): what the RAW target mutates, the CLI target passes.
RAW_SOURCES = ("Kodak_DC50_DC50IMG_DC0010S.KDC", "Kodak_DC120_DC120IMG_P003913.KDC", "Kodak_DC50_DC50IMG_DC0014L.KDC")
PHOTO_MAX_PIXELS = 4_000_000  # what the photo target lets a mutated header claim (decoding stays quick)
DNG_WRITE_MAX_PIXELS = 250_000  # photos up to this size also go through unprocess -> DNG -> read back


def raw_dir() -> Path:
    from tests.conftest import RAW_DIR

    return RAW_DIR


def available_raw_sources() -> list[str]:
    return [name for name in RAW_SOURCES if (raw_dir() / name).is_file()]


def mutate(data: bytes, ops) -> bytes:
    """Apply byte-level mutations ``(kind, where in [0,1], byte, length)``: flip a bit, set a byte,
    truncate, insert or delete a run, duplicate a run. For even ``length`` ``where`` is cubed, so headers
    (where parsers decide sizes and offsets) are hit more often than pixel data."""
    buf = bytearray(data)
    for kind, where, byte, length in ops:
        if not buf:
            break
        pos = min(int((where ** 3 if length % 2 == 0 else where) * len(buf)), len(buf) - 1)
        if kind == "flip":
            buf[pos] ^= 1 << (byte % 8)
        elif kind == "set":
            buf[pos] = byte
        elif kind == "truncate":
            del buf[pos:]
        elif kind == "insert":
            buf[pos:pos] = bytes([byte]) * length
        elif kind == "delete":
            del buf[pos:pos + length]
        elif kind == "repeat":
            buf[pos:pos] = buf[pos:pos + length]
    return bytes(buf)


class Context:
    """The worker's scratch directory and the files cases are made from (built once per worker)."""

    def __init__(self, home: Path):
        self.home = Path(home)
        self.scratch = self.home / "scratch"
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._photo = None
        self._cli_pool = None
        self._onnx_template = None

    def fresh(self, name: str) -> Path:
        path = self.scratch / name
        if path.is_dir():
            shutil.rmtree(path)
        path.mkdir()
        return path

    def photo_pixels(self) -> np.ndarray:
        if self._photo is None:
            from rawedge.io.photo import read_photo

            self._photo = np.ascontiguousarray(read_photo(SAMPLE).srgb[200:224, 300:332])
        return self._photo


# --- shared invariants ---------------------------------------------------------------------------------
def check_exif(exif) -> None:
    for key in ("exposure_time", "iso", "f_number", "focal_length"):
        v = getattr(exif, key)
        assert v is None or (isinstance(v, float) and math.isfinite(v) and v > 0), (key, v)
    assert exif.orientation is None or exif.orientation in range(1, 9), exif.orientation
    for key in ("make", "model", "datetime"):
        assert getattr(exif, key) is None or isinstance(getattr(exif, key), str), key
    vec = exif.to_vector()
    assert vec.dtype == np.float32 and vec.shape == (4,) and not np.any(np.isinf(vec)), vec


def check_profile(profile) -> None:
    from rawedge.types import CameraProfile

    again = CameraProfile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert again.to_dict() == profile.to_dict()
    assert np.all(np.isfinite(profile.cam2rgb()))
    gains = profile.typical_wb_gains()
    assert gains.shape == (3,) and np.all(np.isfinite(gains)) and np.all(gains > 0)


def check_raw_image(raw) -> None:
    from rawedge.types import BAYER_PATTERNS

    assert raw.bayer.dtype == np.uint16 and raw.bayer.ndim == 2 and min(raw.bayer.shape) >= 2
    assert raw.cfa in BAYER_PATTERNS
    assert np.asarray(raw.black_level).shape == (4,) and max(raw.black_level) < raw.white_level
    assert np.all(np.isfinite(raw.as_shot_neutral)) and np.all(np.asarray(raw.as_shot_neutral) > 0)
    norm = raw.normalized()
    assert norm.dtype == np.float32 and float(norm.min()) >= 0.0 and float(norm.max()) <= 1.0
    check_profile(raw.profile)
    check_exif(raw.exif)


# --- photo: JPEG / PNG / TIFF bytes with EXIF ----------------------------------------------------------
PHOTO_FORMATS = {"jpg": "JPEG", "png": "PNG", "tif": "TIFF", "tif16": None}


def build_photo(ctx: Context, fmt: str, tags: dict) -> bytes | None:
    """The base photo in ``fmt`` carrying EXIF ``tags`` {(ifd, tag): value}; None if Pillow will not
    write those values (the case is then skipped: that is the generator's limit, not rawedge's)."""
    import io

    from PIL import Image

    pixels = ctx.photo_pixels()
    out = io.BytesIO()
    if fmt == "tif16":
        import tifffile

        tifffile.imwrite(out, pixels.astype(np.uint16) * 257, photometric="rgb")
        return out.getvalue()
    exif = Image.Exif()
    sub = exif.get_ifd(0x8769)
    try:
        for (ifd, tag), value in tags.items():
            (sub if ifd == "exif" else exif)[tag] = value
        Image.fromarray(pixels, "RGB").save(out, format=PHOTO_FORMATS[fmt], exif=exif)
    except Exception:  # noqa: BLE001 - Pillow's writer rejecting a value is not a finding
        return None
    return out.getvalue()


def run_photo(ctx: Context, case) -> tuple[str, str]:
    from rawedge.io.photo import read_photo

    fmt, tags, ops = case["fmt"], case["tags"], case["ops"]
    data = build_photo(ctx, fmt, _pillow_values(tags))
    if data is None:
        return "ok", "skipped: Pillow cannot write these EXIF values"
    path = ctx.scratch / ("case." + ("tif" if fmt.startswith("tif") else fmt))
    path.write_bytes(mutate(data, ops))
    try:
        photo = read_photo(path, max_pixels=PHOTO_MAX_PIXELS)
    except RawedgeError as exc:
        assert exc.path == str(path) and exc.problem, exc
        return "refused", exc.problem
    srgb = photo.srgb
    assert srgb.ndim == 3 and srgb.shape[2] == 3 and min(srgb.shape[:2]) >= 2, srgb.shape
    assert srgb.dtype in (np.uint8, np.uint16) and srgb.flags.c_contiguous
    check_exif(photo.exif)
    if srgb.shape[0] * srgb.shape[1] <= DNG_WRITE_MAX_PIXELS:
        _photo_to_dng(ctx, photo)
    return "ok", f"{srgb.shape[1]}x{srgb.shape[0]} {srgb.dtype}"


def _pillow_values(tags: dict) -> dict:
    """Strategy values -> what Pillow writes: ("rational", n, d) becomes an IFDRational (d may be 0)."""
    from PIL.TiffImagePlugin import IFDRational

    out = {}
    for key, value in tags.items():
        if isinstance(value, tuple) and value and value[0] == "rational":
            value = IFDRational(value[1], value[2])
        out[key] = value
    return out


def _photo_to_dng(ctx: Context, photo) -> None:
    """The real flow a photo's EXIF goes through: analytic reverse ISP -> DNG -> read back."""
    from rawedge.io.dng import write_dng
    from rawedge.io.raw import read_raw
    from rawedge.isp.pipeline import unprocess
    from rawedge.types import CameraProfile, RawImage

    profile = CameraProfile.generic()
    gains = profile.typical_wb_gains()
    raw = RawImage.from_normalized(unprocess(photo.to_float(), profile, gains), profile, gains, photo.exif)
    out = ctx.scratch / "photo.dng"
    write_dng(out, raw)
    if min(raw.bayer.shape) >= 22:  # LibRaw does not open images under 22x22
        back = read_raw(out)
        assert np.array_equal(back.bayer, raw.bayer)
        check_exif(back.exif)


# --- RAW: mutated real RAW files through LibRaw ----------------------------------------------------------
def run_raw(ctx: Context, case) -> tuple[str, str]:
    from rawedge.io.raw import read_raw

    source = raw_dir() / case["source"]
    path = ctx.scratch / ("case" + source.suffix)
    path.write_bytes(mutate(source.read_bytes(), case["ops"]))
    try:
        raw = read_raw(path)
    except RawedgeError as exc:
        assert exc.path == str(path) and exc.problem, exc
        return "refused", exc.problem
    check_raw_image(raw)
    return "ok", f"{raw.bayer.shape[1]}x{raw.bayer.shape[0]} {raw.cfa}"


# --- DNG: random RawImages written and read back --------------------------------------------------------
def run_dng(ctx: Context, case) -> tuple[str, str]:
    from rawedge.io.dng import rescaled_levels, write_dng
    from rawedge.io.raw import read_raw
    from rawedge.types import CameraProfile, Exif, RawImage

    rng = np.random.default_rng(case["seed"])
    h, w, cfa, white = case["h"], case["w"], case["cfa"], case["white"]
    black = np.asarray(case["black"], dtype=np.float64)
    bayer = rng.integers(0, white + 1, size=(h, w), dtype=np.uint16)
    profile = CameraProfile(name=case["model"] or "fuzz", cfa=cfa, black_level=black.tolist(), white_level=float(white),
                            color_matrix=case["matrix"], make=case["make"], model=case["model"],
                            pixel_aspect=case["aspect"])
    exif = Exif(**case["exif"], make=case["make"], model=case["model"])
    neutral = np.asarray(case["neutral"], dtype=np.float64)
    raw = RawImage(bayer=bayer, cfa=cfa, black_level=black, white_level=float(white), as_shot_neutral=neutral,
                   profile=profile, exif=exif)
    out = ctx.scratch / "case.dng"
    write_dng(out, raw)
    back = read_raw(out)
    assert back.cfa == cfa, (back.cfa, cfa)
    if rescaled_levels(raw):  # different blacks, < 512 levels: stored rescaled to 16 bits (Adobe's SDK)
        assert back.bayer.shape == (h, w) and np.allclose(back.normalized(), raw.normalized(), atol=1e-5), "mosaic"
        assert np.allclose(back.black_level, 0) and back.white_level == 65535, (back.black_level, black)
    else:
        assert back.bayer.shape == (h, w) and np.array_equal(back.bayer, bayer), "mosaic"
        assert np.allclose(back.black_level, black), (back.black_level, black)
    assert back.white_level == (65535 if rescaled_levels(raw) else white), (back.white_level, white)
    assert np.allclose(back.as_shot_neutral / back.as_shot_neutral[1], neutral / neutral[1], rtol=1e-5), "neutral"
    assert back.profile.has_color_matrix == (case["matrix"] is not None), "an unknown matrix stays unknown"
    if case["matrix"] is not None:
        assert np.allclose(back.profile.color_matrix, case["matrix"], atol=2e-4), "matrix"
    aspect = back.profile.pixel_aspect  # LibRaw reads an aspect within ~0.5% of square as square
    assert math.isclose(aspect, case["aspect"], rel_tol=1e-4) or (aspect == 1.0 and abs(case["aspect"] - 1) < 5e-3), \
        (aspect, case["aspect"])
    expected = case["exif"]
    for key, rel in (("exposure_time", 1e-5), ("f_number", 2e-3), ("focal_length", 2e-3), ("iso", 0)):
        want, got = expected.get(key), getattr(back.exif, key)
        if want is None:
            assert got is None, (key, got)
        else:
            assert got is not None and abs(got - want) <= rel * want + (0.5 if key == "iso" else 0), (key, got, want)
    assert back.exif.orientation == (expected.get("orientation") or 1)
    assert back.exif.datetime == expected.get("datetime"), (back.exif.datetime, expected.get("datetime"))
    assert back.exif.make == (case["make"] or "rawedge") and back.exif.model == (case["model"] or "fuzz")
    return "ok", f"{w}x{h} {cfa}"


# --- model metadata JSON ------------------------------------------------------------------------------------
def run_meta(ctx: Context, case) -> tuple[str, str]:
    from rawedge.runtimes.fusion import FusionSettings

    from rawedge.cli.model_info import describe_model
    from rawedge.metadata.schema import ModelMeta
    from rawedge.types import CameraProfile

    text = case["text"]
    model_file = None
    if isinstance(text, str):  # bytes: metadata as a damaged file gives it (not storable through onnx's API)
        model_file = ctx.scratch / "meta.onnx"
        model_file.write_bytes(_onnx_with_metadata(ctx, text))
    try:
        meta = ModelMeta.from_json(text, "fuzz.onnx")
    except RawedgeError as exc:
        assert exc.problem
        if model_file is not None:
            _describe_refuses(describe_model, model_file)
        return "refused", exc.problem
    assert ModelMeta.from_json(meta.to_json()) == meta
    for d in meta.camera_profiles:
        try:
            check_profile(CameraProfile.from_dict(d))
        except RawedgeError:
            pass
    try:
        FusionSettings.from_meta(meta, meta.outputs)
    except RawedgeError:
        pass
    if model_file is not None:
        lines = describe_model(model_file)
        assert lines and all(isinstance(line, str) for line in lines)
    return "ok", meta.model_name


def _describe_refuses(describe_model, path: Path) -> None:
    try:
        describe_model(path)
    except RawedgeError:
        return
    raise AssertionError("rawedge info showed metadata that ModelMeta refuses")


def _onnx_with_metadata(ctx: Context, text: str) -> bytes:
    """A one-node ONNX model (srgb -> raw) whose rawedge metadata is ``text``."""
    import onnx
    from onnx import TensorProto, helper

    if ctx._onnx_template is None:
        graph = helper.make_graph([helper.make_node("Identity", ["srgb"], ["raw"])], "fuzz",
                                  [helper.make_tensor_value_info("srgb", TensorProto.FLOAT, ["N", 4, "h", "w"])],
                                  [helper.make_tensor_value_info("raw", TensorProto.FLOAT, ["N", 4, "h", "w"])])
        ctx._onnx_template = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    model = onnx.ModelProto()
    model.CopyFrom(ctx._onnx_template)
    helper.set_model_props(model, {"rawedge": text})
    return model.SerializeToString()


# --- camera-profile JSON files -------------------------------------------------------------------------------
def run_profile(ctx: Context, case) -> tuple[str, str]:
    from rawedge.profiles import resolve_profile
    from rawedge.types import CameraProfile, Exif, RawImage

    path = ctx.scratch / "profile.json"
    path.write_bytes(case["text"].encode("utf-8", "surrogatepass") if isinstance(case["text"], str) else case["text"])
    try:
        profile = CameraProfile.load(path)
    except RawedgeError as exc:
        assert exc.path == str(path) and exc.problem, exc
        return "refused", exc.problem
    check_profile(profile)
    again, gains, _ = resolve_profile(Exif(), profile_json=path)
    assert again.to_dict() == profile.to_dict() and gains is None
    raw = RawImage.from_normalized(np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4), profile,
                                   profile.typical_wb_gains())
    check_raw_image(raw)
    return "ok", profile.name


# --- the command line ---------------------------------------------------------------------------------------
def cli_pool(ctx: Context) -> Path:
    """Files the CLI cases refer to as @name (made once; copied fresh for every case)."""
    if ctx._cli_pool is not None:
        return ctx._cli_pool
    from rawedge.io.photo import read_photo, write_jpeg, write_png

    pool = ctx.home / "pool"
    pool.mkdir()
    sample = read_photo(SAMPLE)
    pixels = np.ascontiguousarray(sample.srgb[100:148, 200:264])
    write_jpeg(pool / "photo.jpg", pixels, sample.exif)
    write_png(pool / "photo.png", pixels, sample.exif)
    from PIL import Image

    Image.fromarray(pixels[..., 0]).save(pool / "gray.png")
    (pool / "broken.jpg").write_bytes((pool / "photo.jpg").read_bytes()[:300])
    (pool / "empty.jpg").write_bytes(b"")
    (pool / "notes.txt").write_text("not an image\n")
    (pool / "photos").mkdir()
    shutil.copy(pool / "photo.jpg", pool / "photos" / "a.jpg")
    shutil.copy(pool / "broken.jpg", pool / "photos" / "b.jpg")
    (pool / "empty").mkdir()
    (pool / "raws").mkdir()
    sources = available_raw_sources()
    if sources:
        shutil.copy(raw_dir() / sources[0], pool / "camera.kdc")
        shutil.copy(raw_dir() / sources[0], pool / "raws" / sources[0])
    from rawedge.types import CameraProfile

    CameraProfile.generic().save(pool / "profile.json")
    (pool / "bad.json").write_text('{"name": "x", "cfa": "RGBX"}')
    (pool / "broken.onnx").write_bytes(b"\x08\x07garbage")
    (pool / "recipe.yaml").write_text("model: {name: nope}\n")
    try:
        _tiny_model(pool)
    except Exception as exc:  # noqa: BLE001 - without torch/onnx the pool has no model; the rest still serves
        (pool / "no-model.txt").write_text(f"{type(exc).__name__}: {exc}")
    (pool / "model.pt").write_bytes(b"not a checkpoint")
    ctx._cli_pool = pool
    return pool


def _tiny_model(pool: Path) -> None:
    """A depth-2 U-Net exported by rawedge (the tests' helper), and a copy without metadata."""
    import onnx

    from tests.test_runtimes import export_tiny_unet

    path, checkpoint, _ = export_tiny_unet(pool, name="model")
    checkpoint.unlink()  # a real checkpoint would let `train --init`, `export`... run for long
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.save(proto, str(pool / "nometa.onnx"))
    proto = onnx.load(str(path))
    proto.graph.initializer[0].raw_data = bytes(len(proto.graph.initializer[0].raw_data))
    onnx.save(proto, str(pool / "tampered.onnx"))  # metadata intact, weights changed


def run_cli(ctx: Context, case) -> tuple[str, str]:
    from click.testing import CliRunner

    from rawedge.cli import main

    pool = cli_pool(ctx)
    work = ctx.scratch / "cli"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(pool, work)
    args = [str(work / a[1:]) if a.startswith("@") and len(a) > 1 else a for a in case["args"]]
    import os

    cwd = os.getcwd()
    os.chdir(work)
    try:
        result = CliRunner().invoke(main, args, catch_exceptions=True)
    finally:
        os.chdir(cwd)
    output = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        tb = "".join(traceback.format_exception(result.exception))
        raise AssertionError(f"rawedge {' '.join(case['args'])}: uncaught {type(result.exception).__name__}\n{tb}")
    assert result.exit_code in (0, 1, 2), (result.exit_code, output[-2000:])
    assert "Traceback" not in output, output[-2000:]
    if result.exit_code == 1:
        assert "error" in output.lower() or "failed" in output.lower(), output[-500:]
    return {0: "ok", 1: "refused", 2: "usage"}[result.exit_code], output[-200:]


# --- exported model files -------------------------------------------------------------------------------------
def run_model(ctx: Context, case) -> tuple[str, str]:
    """A mutated exported model through `rawedge info` and the runtime (the integrity check, the metadata
    parser, ONNX Runtime's loader): refused with one line, or it runs and gives a valid RawImage."""
    from rawedge.runtimes import Reconstructor

    from rawedge.cli.model_info import describe_model

    source = cli_pool(ctx) / "model.onnx"
    if not source.is_file():
        raise LookupError("no exported model in the worker's pool (needs torch and onnx)")
    path = ctx.scratch / "case.onnx"
    path.write_bytes(mutate(source.read_bytes(), case["ops"]))
    statuses = []
    try:
        assert all(isinstance(line, str) for line in describe_model(path))
        statuses.append("ok")
    except RawedgeError as exc:
        assert exc.problem
        statuses.append("refused")
    try:
        with Reconstructor.open(path, threads=1) as rec:
            raw = rec(ctx.photo_pixels())
        check_raw_image(raw)
        statuses.append("ok")
    except RawedgeError as exc:
        assert exc.problem
        statuses.append("refused")
    return ("ok" if statuses == ["ok", "ok"] else "refused"), "/".join(statuses)


TARGETS = {"model": run_model, "photo": run_photo, "raw": run_raw, "dng": run_dng, "meta": run_meta, "profile": run_profile,
           "cli": run_cli}


def execute(ctx: Context, target: str, case) -> tuple[str, str]:
    return TARGETS[target](ctx, case)
