"""The Reconstructor: tiles blend to the whole-image result, every size and CFA phase comes back
exactly, overexposure fusion uses one full-resolution mask, threads, bounded memory, profiles."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from rawedge.runtimes import Reconstructor
from rawedge.runtimes.fusion import feather, overexposure_mask, packed_mask, packed_mask_by_strips
from rawedge.runtimes.plan import photo_thumbnail

from rawedge.contract import make_thumb
from rawedge.errors import RawedgeError
from rawedge.io.photo import read_photo
from rawedge.isp.ops import pack, unpack
from rawedge.isp.pipeline import unprocess
from rawedge.metadata.schema import ModelMeta
from rawedge.metrics import psnr
from rawedge.tiling import Frame, TileGrid, axis_starts, reflect_index
from rawedge.types import BAYER_PATTERNS, CameraProfile, Exif, RawImage
from tests.conftest import SAMPLE_JPEG, map_in_threads


@pytest.fixture(scope="module")
def photo():
    return read_photo(SAMPLE_JPEG)


@pytest.fixture(scope="module")
def unet(tiny_unet):
    return tiny_unet[0], tiny_unet[2]


@pytest.fixture(scope="module")
def analytic(tmp_path_factory):
    """The weight-free analytic model, exported: its output is known exactly (rawedge.isp.pipeline)."""
    pytest.importorskip("torch")
    from rawedge.export import export_checkpoint

    from rawedge.models.checkpoint import save_checkpoint
    from rawedge.models.registry import create_model

    d = tmp_path_factory.mktemp("analytic")
    save_checkpoint(d / "analytic.pt", create_model("analytic"))
    export_checkpoint(d / "analytic.pt", d / "analytic.onnx", check=False)
    return d / "analytic.onnx"


# --- tiling geometry ------------------------------------------------------------------------------------
def test_reflect_index_matches_numpy_reflect_and_folds_far():
    n = 7
    idx = np.arange(-6, 13)
    np.testing.assert_array_equal(reflect_index(idx, n), np.pad(np.arange(n), 6, mode="reflect"))
    assert set(reflect_index(np.arange(-100, 100), 2).tolist()) == {0, 1}
    assert set(reflect_index(np.arange(5), 1).tolist()) == {0}


def test_tiles_cover_the_frame_on_the_alignment_grid():
    frame = Frame.for_photo(301, 457, (1, 0), align=8)
    assert (frame.height, frame.width) == (304, 464)
    grid = TileGrid.plan(frame, tile=96, overlap=24)
    assert all(y % 8 == 0 for y in grid.ys) and all(x % 8 == 0 for x in grid.xs)
    assert grid.ys[-1] + grid.th == frame.height and grid.xs[-1] + grid.tw == frame.width
    assert all(b - a <= 96 - 24 for a, b in zip(grid.ys, grid.ys[1:]))
    sy, sx = grid.weight_sums(frame)
    assert sy.min() > 0 and sx.min() > 0
    assert axis_starts(64, 128, 16) == [0]


# --- tiled vs whole image -----------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(600, 800), (301, 457), (97, 131)])
def test_tiled_matches_whole_image_within_60db(unet, photo, size):
    """The U-Net (depth 2) sees ~44 px; 99.9% of its response lies within 8 px, so overlaps of 16-40 px
    (export recommends 16) make tile seams invisible."""
    h, w = size
    img = np.ascontiguousarray(photo.srgb[:h, :w])
    whole_rec = Reconstructor.open(unet[0], tile=0, threads=1)
    whole = whole_rec(img, exif=photo.exif).normalized()
    for tile, overlap in [(64, 16), (96, 24), (128, 40)]:
        tiled = Reconstructor(whole_rec.runner, tile=tile, overlap=overlap, batch=3)(img, exif=photo.exif)
        assert tiled.bayer.shape == (h, w)
        assert psnr(tiled.normalized(), whole) >= 60.0, (tile, overlap)
    whole_rec.close()


def test_static_tile_model(unet, photo, tmp_path):
    """A fixed-shape export (edge runtimes) runs exactly its tile and batch; photos smaller than the
    tile are padded up to it; the result matches the dynamic model run whole."""
    from rawedge.export import export_checkpoint

    static = tmp_path / "unet.tile64.onnx"
    export_checkpoint(unet[0].with_suffix(".pt"), static, check=False, static_tile=64)
    with Reconstructor.open(static, threads=1) as rec, Reconstructor.open(unet[0], tile=0, threads=1) as whole:
        assert (rec.tile, rec.batch) == (64, 1) and rec.runner.input_specs()["srgb"] == (1, 3, 64, 64)
        with pytest.raises(RawedgeError, match="fixed 64x64"):
            Reconstructor(rec.runner, tile=128)
        assert rec(photo.srgb[:17, :31]).bayer.shape == (17, 31)
        for h, w in [(97, 131), (301, 457)]:
            img = np.ascontiguousarray(photo.srgb[:h, :w])
            assert psnr(rec(img).normalized(), whole(img).normalized()) >= 60.0


def test_defaults_come_from_the_model_metadata(unet):
    from rawedge.runtimes.reconstructor import WORK_PIXELS, WORK_TILE, default_batch

    path, meta = unet
    with Reconstructor.open(path, threads=1) as rec:  # the working tile unless the model recommends a larger one
        assert (rec.tile, rec.overlap, rec.align) == (max(meta.tile, WORK_TILE), meta.overlap, 8)
        assert rec.batch == default_batch(rec.tile) == max(1, WORK_PIXELS // rec.tile**2)
    with Reconstructor.open(path, tile=256, threads=1) as rec:  # about the same pixels a call
        assert rec.batch == WORK_PIXELS // 256**2
    assert default_batch(0) == 1 and default_batch(4096) == 1
    with Reconstructor.open(path, tile=100, overlap=10, threads=1) as rec:  # rounded to align
        assert (rec.tile, rec.overlap) == (96, 16)
    with pytest.raises(RawedgeError, match="overlap"):
        Reconstructor.open(path, tile=32, overlap=32)


# --- sizes and CFA phase -------------------------------------------------------------------------------
def _profile(cfa: str) -> CameraProfile:
    g2 = [[0.5766, -0.1595, -0.0522], [-0.6219, 1.4106, 0.2376], [-0.1244, 0.2218, 0.6004]]
    return CameraProfile(name=f"test {cfa}", cfa=cfa, black_level=[16.0, 20.0, 24.0, 28.0], white_level=1023.0,
                         color_matrix=g2)


@pytest.mark.parametrize("cfa", BAYER_PATTERNS)
def test_output_size_and_cfa_phase(analytic, photo, cfa):
    """The analytic model's result is known in numpy for any CFA: the reconstructed mosaic must equal it
    pixel for pixel (colour sites and per-position black levels in the camera's phase)."""
    profile = _profile(cfa)
    gains = np.array([2.1, 1.0, 1.4])
    with Reconstructor.open(analytic, tile=16, overlap=4, threads=1) as rec:
        for h, w in [(2, 2), (3, 5), (17, 31), (40, 23)]:
            img = np.ascontiguousarray(photo.srgb[100:100 + h, 200:200 + w])
            raw = rec(img, exif=photo.exif, profile=profile, wb=gains)
            assert raw.bayer.shape == (h, w) and raw.cfa == cfa
            expected = RawImage.from_normalized(unprocess(img.astype(np.float32) / 255, profile, gains), profile, gains)
            assert np.abs(raw.bayer.astype(int) - expected.bayer.astype(int)).max() <= 1, (h, w)
            np.testing.assert_allclose(raw.wb_gains(), gains / gains[1])


def test_uint16_and_float_input_agree_with_uint8(analytic, photo):
    img8 = np.ascontiguousarray(photo.srgb[:64, :96])
    with Reconstructor.open(analytic, threads=1) as rec:
        a = rec(img8).bayer.astype(int)
        b = rec(img8.astype(np.uint16) * 257).bayer.astype(int)
        c = rec(img8.astype(np.float32) / 255).bayer.astype(int)
        assert np.abs(a - b).max() <= 1 and np.abs(a - c).max() <= 1
        for bad in (np.zeros((1, 5, 3), np.uint8), np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.int32)):
            with pytest.raises(RawedgeError):
                rec(bad)
        with pytest.raises(RawedgeError, match="white balance"):
            rec(img8, wb=[1.0, 0.0, 2.0])


# --- inputs: thumbnail, profile, EXIF ------------------------------------------------------------------
def test_thumbnail_is_make_thumb_of_the_photo(photo, rng):
    """Bit for bit the contract's thumbnail, whatever the strip height (also uint16 and tiny photos)."""
    np.testing.assert_array_equal(photo_thumbnail(photo.srgb), make_thumb(photo.to_float()))
    for img in (photo.srgb[:301, :457], rng.integers(0, 65536, (77, 530, 3), dtype=np.uint16), photo.srgb[:3, :5]):
        expected = make_thumb(img.astype(np.float32) / np.float32(255 if img.dtype == np.uint8 else 65535))
        for strip in (1, 16, 1000):
            np.testing.assert_array_equal(photo_thumbnail(img, strip_rows=strip), expected)


def test_profile_choice_and_exif_carried(unet, photo):
    with Reconstructor.open(unet[0], threads=1) as rec:
        profile, how = rec.choose_profile(photo.exif)
        assert profile.model == "Canon PowerShot S40" and "profile for" in how
        assert rec.choose_profile(Exif(model="Unknown X1"))[0].name == "generic"
        mine = _profile("GBRG")
        assert rec.choose_profile(photo.exif, mine) == (mine, "given")
        raw = rec.reconstruct_photo(photo)
        assert raw.exif == photo.exif and raw.profile.model == "Canon PowerShot S40"
        assert raw.source == photo.source
        np.testing.assert_allclose(raw.wb_gains(), profile.typical_wb_gains(), rtol=1e-9)


# --- overexposure fusion ----------------------------------------------------------------------------------
FUSION = {"threshold": 0.978, "mode": "luma", "feather_radius": 3,
          "outputs": {"oe": "raw_oe", "noe": "raw_noe", "fused": "raw"}}


def _fusion_model(path):
    """A two-branch model in plain ONNX: raw_noe = half the pixel mean (packed), raw_oe = 1, and a
    tile-local ``raw`` = their average, which the runtime must not use."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    def const(name, value):
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.FLOAT, [], [value]))

    nodes = [const("half", 0.5), const("zero", 0.0), const("one", 1.0),
             helper.make_node("ReduceMean", ["srgb"], ["mean"], axes=[1], keepdims=1),
             helper.make_node("SpaceToDepth", ["mean"], ["packed"], blocksize=2),
             helper.make_node("Mul", ["packed", "half"], ["raw_noe"]),
             helper.make_node("Mul", ["packed", "zero"], ["zeros"]),
             helper.make_node("Add", ["zeros", "one"], ["raw_oe"]),
             helper.make_node("Add", ["raw_oe", "raw_noe"], ["sum"]),
             helper.make_node("Mul", ["sum", "half"], ["raw"])]
    srgb = helper.make_tensor_value_info("srgb", TensorProto.FLOAT, ["N", 3, "H", "W"])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4, "h", "w"]) for n in ("raw", "raw_oe", "raw_noe")]
    graph = helper.make_graph(nodes, "fusion_test", [srgb], outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    meta = ModelMeta(model_name="fusion-test", config={}, align=2, tile=64, overlap=16,
                     outputs=["raw", "raw_oe", "raw_noe"], fusion=FUSION)
    entry = model.metadata_props.add()
    entry.key, entry.value = "rawedge", meta.to_json()
    onnx.save(model, str(path))
    return path


def test_fusion_uses_one_full_resolution_mask(tmp_path, photo):
    path = _fusion_model(tmp_path / "fusion.onnx")
    img = np.array(photo.srgb[:150, :226])
    img[40:90, 60:140] = 255  # an overexposed patch crossing tile borders
    rgb = img.astype(np.float32) / 255
    mask = packed_mask(feather(overexposure_mask(rgb), 3))  # RGGB profile, even size: frame == photo
    noe = pack(0.5 * rgb.mean(axis=2), "RGGB")
    expected_mosaic = unpack(mask[None] * 1.0 + (1 - mask[None]) * noe, "RGGB")
    profile = _profile("RGGB")
    gains = np.array([2.0, 1.0, 1.5])
    expected = RawImage.from_normalized(expected_mosaic, profile, gains)
    for tile in (0, 32, 64):
        with Reconstructor.open(path, tile=tile, overlap=16, threads=1) as rec:
            assert rec.fusion is not None and rec.fusion.feather_radius == 3
            raw = rec(img, profile=profile, wb=gains)
        assert np.abs(raw.bayer.astype(int) - expected.bayer.astype(int)).max() <= 1, tile
    assert 0 < mask.mean() < 1  # the patch and its feathered edge are really there


def test_strip_mask_equals_whole_image_mask(rng):
    img = rng.random((70, 46, 3), dtype=np.float32)
    img[10:30, 5:40] = 1.0
    whole = packed_mask(feather(overexposure_mask(img, 0.9, "max"), 4))
    strips = packed_mask_by_strips(lambda a, b: img[a:b], 70, 46, 0.9, "max", radius=4, strip=8)
    np.testing.assert_allclose(strips, whole, atol=1e-6)


# --- threads and memory -----------------------------------------------------------------------------------
def test_threads_get_the_serial_results(unet, photo):
    crops = [np.ascontiguousarray(photo.srgb[i * 20:i * 20 + 90, i * 30:i * 30 + 130]) for i in range(8)]
    with Reconstructor.open(unet[0], tile=64, overlap=16, threads=1) as rec:
        serial = [rec(c, exif=photo.exif).bayer for c in crops]
        results = map_in_threads(lambda c: rec(c, exif=photo.exif).bayer, crops)
    for a, b in zip(serial, results):
        np.testing.assert_array_equal(a, b)


def test_memory_stays_near_the_output_buffers(analytic, photo):
    """numpy allocations (traced) during a 2.9 MP reconstruction: the packed accumulator (4 B/px), the
    uint16 result (2 B/px), strips and a batch of tiles; one full-resolution float copy of the photo
    (12 B/px) or even of one channel (4 B/px) would break the bound."""
    from rawedge.bench.speed import bench_image

    img = bench_image(photo.srgb, 2_900_000)
    pixels = img.shape[0] * img.shape[1]
    with Reconstructor.open(analytic, tile=256, overlap=16, batch=2, threads=1) as rec:
        rec(img[:64, :64])
        tracemalloc.start()
        raw = rec(img)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert raw.bayer.shape == img.shape[:2]
    assert peak / pixels < 9.0, f"{peak / pixels:.1f} bytes per pixel"  # measured: about 7


# --- plan, run, blend -------------------------------------------------------------------------------------
def test_plan_run_blend_is_the_call(unet, photo):
    """The three steps give what ``rec(...)`` gives; the user's camera options are checked once, up front."""
    img = np.ascontiguousarray(photo.srgb[:90, :130])
    with Reconstructor.open(unet[0], tile=64, overlap=16, batch=3, threads=1) as rec:
        plan = rec.plan(img, photo.exif)
        assert plan.profile.model == "Canon PowerShot S40" and "profile for" in plan.how and "; " in plan.how
        assert sum(len(b.positions) for b in plan.batches()) == len(plan) == len(plan.grid) > 1
        raw = rec.blend(plan, rec.run(plan)).raw()
        np.testing.assert_array_equal(raw.bayer, rec(img, exif=photo.exif).bayer)
        with pytest.raises(RawedgeError, match="unknown camera"):
            rec.camera_options(camera="No Such Camera")
        fixed = rec.camera_options(profile=_profile("GBRG"), wb=[2.0, 1.0, 1.5])
        plan = rec.plan(img, photo.exif, fixed)
        assert (plan.how, plan.profile.cfa) == ("given", "GBRG")
        np.testing.assert_allclose(plan.gains, [2.0, 1.0, 1.5])
        assert rec.reconstruct(plan).cfa == "GBRG"


def test_out_of_memory_retries_with_smaller_batches(unet, photo, caplog):
    """A backend out of memory on 4 tiles a call: the batch is split, later batches stay small, one warning,
    and the RAW is the one the unconstrained run writes; other errors and single tiles still fail."""
    from rawedge.runtimes.reconstructor import is_out_of_memory

    srgb = photo.srgb[:200, :300]
    with Reconstructor.open(unet[0], runtime="ort", tile=64, overlap=16, batch=4) as rec:
        expected = rec(srgb, exif=photo.exif).bayer
        real = rec.runner.infer
        calls = []

        def small_gpu(feed):
            calls.append(len(feed["srgb"]))
            if len(feed["srgb"]) > 1:
                raise RuntimeError("CUDA failure 2: out of memory ; GPU=0")
            return real(feed)

        rec.runner.infer = small_gpu
        with caplog.at_level("WARNING", logger="rawedge.runtimes"):
            got = rec(srgb, exif=photo.exif).bayer
        np.testing.assert_array_equal(got, expected)
        assert rec.batch == 1 and max(calls[calls.index(1):]) == 1  # after the first split, no more big calls
        assert len([r for r in caplog.records if "out of memory" in r.getMessage()]) == 2  # 4 -> 2 -> 1
        rec.runner.infer = lambda feed: (_ for _ in ()).throw(RuntimeError("shape mismatch"))
        with pytest.raises(RuntimeError, match="shape mismatch"):
            rec(srgb, exif=photo.exif)
    assert is_out_of_memory(MemoryError()) and is_out_of_memory(RuntimeError("CUDNN_STATUS_ALLOC_FAILED"))
    assert not is_out_of_memory(RuntimeError("invalid argument"))
