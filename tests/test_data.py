"""Paired data: `rawedge data prepare` on real files, splits, camera-JPEG alignment and binning,
synthetic pairs, and Bayer-safe crops under flips."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from rawedge.data.align import PreviewAlignment, align_preview, bin_to_preview, resample_area, valid_window
from rawedge.data.manifest import assign_splits, load_manifest
from rawedge.data.rggb import normalize_levels, rggb_black_levels, to_rggb
from rawedge.errors import RawedgeError
from rawedge.isp import ops
from tests.conftest import KODAK_DIR, RAW_DIR, needs_shared

SOURCES = ["Kodak_DC50_DC50IMG_DC0008L.KDC", "Kodak_DC50_DC50IMG_DC0009L.KDC", "Canon_PowerShot_S40_CRW_0117.CRW"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """`rawedge data prepare` through the CLI on two Kodak DC50 files and one Canon S40 file."""
    if not all((RAW_DIR / name).is_file() for name in SOURCES) or not KODAK_DIR.is_dir():
        pytest.skip("shared data not found")
    root = tmp_path_factory.mktemp("prep")
    raw_dir, photo_dir = root / "raw", root / "photos"
    raw_dir.mkdir()
    photo_dir.mkdir()
    for name in SOURCES:
        (raw_dir / name).symlink_to(RAW_DIR / name)
    for name in ("kodim03.png", "kodim23.png"):
        (photo_dir / name).symlink_to(KODAK_DIR / name)
    from rawedge.cli import main

    result = CliRunner().invoke(main, ["data", "prepare", str(raw_dir), "-o", str(root / "pairs"), "--renders", "1",
                                       "--synthetic-from", str(photo_dir), "--synthetic", "2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    return root / "pairs", result.output


@needs_shared
def test_prepare_manifest_kinds_and_files(prepared):
    data_dir, output = prepared
    manifest = load_manifest(data_dir)
    kinds = {s.kind for s in manifest.samples}
    assert kinds == {"libraw", "camera_jpeg", "synthetic"}
    assert sum(s.kind == "libraw" for s in manifest.samples) == 3  # one rendering per RAW file
    assert [s.source for s in manifest.samples if s.kind == "camera_jpeg"] == ["Canon_PowerShot_S40_CRW_0117.CRW"]
    assert "3 libraw, 1 camera_jpeg, 2 synthetic" in output
    for s in manifest.samples:
        from PIL import Image

        with Image.open(data_dir / s.raw) as raw_png, Image.open(data_dir / s.srgb) as srgb:
            assert raw_png.mode == "I;16" and raw_png.size == (s.width, s.height) == srgb.size
        assert s.height % 2 == 0 and s.width % 2 == 0
        assert np.isfinite(np.asarray(s.wb)).all() and np.asarray(s.cam2rgb).shape == (3, 3)
    d = json.loads((data_dir / "manifest.json").read_text())
    assert set(d["cameras"]) == {s.camera for s in manifest.samples}
    assert d["samples"][0]["settings"]  # how each pair was made is recorded


@needs_shared
def test_prepare_ground_truth_is_rggb_phase_of_the_raw(prepared):
    """The stored target of a GRBG Kodak file is its normalised mosaic cropped to RGGB phase."""
    from rawedge.data.dataset import load_pair
    from rawedge.io.raw import read_raw

    data_dir, _ = prepared
    manifest = load_manifest(data_dir)
    sample = next(s for s in manifest.samples if s.source == SOURCES[0] and s.kind == "libraw")
    raw = read_raw(RAW_DIR / SOURCES[0])
    assert raw.cfa == "GRBG"
    expected = to_rggb(raw.normalized(), raw.cfa)
    pair = load_pair(data_dir, sample)
    np.testing.assert_allclose(pair.mosaic, expected, atol=1e-6)
    assert sample.settings["rggb_offset"] == [0, 1]
    # the rendering is aligned: its green channel correlates with the mosaic's greens
    g_render = ops.pack(pair.srgb[..., 1].astype(np.float32), "RGGB")[1]
    g_raw = ops.pack(pair.mosaic, "RGGB")[1]
    assert np.corrcoef(g_render.ravel(), g_raw.ravel())[0, 1] > 0.9


@needs_shared
def test_prepare_splits_by_source_file(prepared):
    data_dir, _ = prepared
    manifest = load_manifest(data_dir)
    split_of = {}
    for s in manifest.samples:
        assert split_of.setdefault(s.source, s.split) == s.split  # every pair of a source in one split
    dc50 = [split_of[name] for name in SOURCES[:2]]
    assert sorted(dc50) == ["train", "val"]  # a camera with 2 files gets a validation file
    assert split_of[SOURCES[2]] == "train"  # a single-file camera stays in training
    synthetic = sorted(split_of[p] for p in ("kodim03.png", "kodim23.png"))
    assert synthetic == ["train", "val"]


@needs_shared
def test_camera_jpeg_alignment_residual_is_small(prepared):
    data_dir, output = prepared
    manifest = load_manifest(data_dir)
    sample = next(s for s in manifest.samples if s.kind == "camera_jpeg")
    a = sample.alignment
    assert a["ncc"] > 0.93
    assert a["residual_shift_px"] < 0.3
    assert 3.4 < a["scale_x"] < 3.7 and abs(a["scale_x"] - a["scale_y"]) < 0.02  # square pixels
    assert (sample.height, sample.width) == (480, 640)
    assert "residual shift max" in output


def test_assign_splits_stratified_and_deterministic():
    groups = {"A": [f"a{i}" for i in range(8)], "B": ["b0", "b1"], "C": ["c0"]}
    first = assign_splits(groups, 0.25, seed=1)
    assert first == assign_splits(groups, 0.25, seed=1)
    val = {g: sum(first[n] == "val" for n in names) for g, names in groups.items()}
    assert val == {"A": 2, "B": 1, "C": 0}
    other = [assign_splits(groups, 0.25, seed=s) for s in range(2, 8)]
    assert any(o != first for o in other)  # the seed matters
    with pytest.raises(RawedgeError):
        assign_splits(groups, 1.0, seed=0)


def test_rggb_helpers():
    mosaic = np.arange(5 * 7).reshape(5, 7)
    assert to_rggb(mosaic, "GRBG").shape == (4, 6) and to_rggb(mosaic, "GRBG")[0, 0] == 1
    assert to_rggb(mosaic, "BGGR")[0, 0] == 8
    assert rggb_black_levels([1, 2, 3, 4], "GRBG") == [2.0, 1.0, 4.0, 3.0]  # R, G1, G2, B
    levels = np.array([[10, 20], [30, 1000]], np.uint16)
    np.testing.assert_allclose(normalize_levels(levels, [10, 10, 20, 20], 1010), [[0, 0.01], [0.01, 0.9898], ],
                               atol=1e-3)


def _smooth_scene(rng, h, w):
    """Linear camera RGB with structure at several scales (for the alignment test)."""
    from scipy.ndimage import gaussian_filter

    img = np.stack([gaussian_filter(rng.random((h, w)), 6) for _ in range(3)], axis=-1)
    img = (img - img.min()) / (img.max() - img.min())
    img[h // 3: h // 2, w // 4: w // 2] = [0.9, 0.2, 0.1]
    return (0.05 + 0.85 * img).astype(np.float32)


def test_align_preview_recovers_known_geometry_and_binning_matches():
    rng = np.random.default_rng(0)
    scene = _smooth_scene(rng, 600, 800)
    mosaic = ops.mosaic(scene, "RGGB")
    truth = PreviewAlignment(scale_x=3.2, scale_y=3.2, offset_x=21.3, offset_y=9.7, ncc=1, residual_shift_px=0)
    hp, wp = 180, 240
    preview_lin = np.stack([resample_area(scene[..., c], (hp, wp), (truth.offset_y, truth.offset_x),
                                          (truth.scale_y, truth.scale_x)) for c in range(3)], axis=-1)
    preview = ops.linear_to_srgb(preview_lin)
    found = align_preview(preview, mosaic, np.ones(3), np.eye(3))
    assert abs(found.scale_x - 3.2) < 0.02 and abs(found.scale_y - 3.2) < 0.02
    assert abs(found.offset_x - 21.3) < 1.0 and abs(found.offset_y - 9.7) < 1.0
    assert found.ncc > 0.99 and found.residual_shift_px < 0.2
    window = valid_window(found, mosaic.shape, (hp, wp))
    assert window == (0, 0, hp, wp)
    binned = bin_to_preview(mosaic, found, window)
    expected = ops.mosaic(preview_lin, "RGGB")  # a sensor with the preview's pixels
    assert np.abs(binned - expected).mean() < 0.01
    # a naive binning that ignores the colour planes' own phase is measurably worse
    naive = np.stack([resample_area(ops.pack(mosaic, "RGGB")[c], (hp, wp), (found.offset_y / 2, found.offset_x / 2),
                                    (found.scale_y / 2, found.scale_x / 2)) for c in range(4)])
    naive_mosaic = ops.unpack(np.stack([naive[c][dy::2, dx::2] for c, (dy, dx) in
                                        enumerate(ops.packing_order("RGGB"))]), "RGGB")
    assert np.abs(naive_mosaic - expected).mean() > np.abs(binned - expected).mean()


def test_synthetic_pair_noise_and_levels():
    from rawedge.data.synthetic import make_synthetic_pair
    from rawedge.types import CameraProfile

    profile = CameraProfile(name="cam", cfa="GRBG", black_level=[64, 60, 62, 66], white_level=4095.0,
                            color_matrix=np.linalg.inv(np.array([[0.41, 0.36, 0.18], [0.21, 0.72, 0.07],
                                                                 [0.02, 0.12, 0.95]])).tolist())
    flat = np.full((64, 96, 3), 0.6, np.float32)
    pair = make_synthetic_pair(flat, profile, np.random.default_rng(5))
    assert pair.mosaic.dtype == np.uint16 and pair.mosaic.shape == (64, 96)
    assert pair.black_level == [60.0, 64.0, 66.0, 62.0]  # GRBG levels moved to R, G1, G2, B
    norm = normalize_levels(pair.mosaic, pair.black_level, pair.white_level)
    green = ops.pack(norm, "RGGB")[1]
    expected_std = np.sqrt(green.mean() * pair.settings["shot_noise"] + pair.settings["read_noise"])
    assert 0.7 * expected_std < green.std() < 1.4 * expected_std + 1.0 / 4095
    assert pair.srgb.dtype == np.uint8 and pair.srgb.shape == (64, 96, 3)
    assert 0.8 <= pair.settings["render_gain"] <= 1.4 and 80 <= pair.settings["jpeg_quality"] <= 95


def test_toy_data_and_manifest_errors(tmp_path):
    from rawedge.data.pairs import make_toy_data, prepare

    manifest = make_toy_data(tmp_path / "toy", count=3, size=(32, 48))
    assert len(manifest.samples) == 3 and {s.split for s in manifest.samples} == {"train", "val"}
    assert load_manifest(tmp_path / "toy").samples[0].id == manifest.samples[0].id
    with pytest.raises(RawedgeError, match="not a data folder"):
        load_manifest(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RawedgeError, match="no RAW files"):
        prepare(tmp_path / "empty", tmp_path / "out")


def test_mosaic_window_keeps_each_sites_black_level():
    from rawedge.data.dataset import PairArrays

    levels = np.random.default_rng(2).integers(100, 1000, (10, 12)).astype(np.uint16)
    arrays = PairArrays(srgb=np.zeros((10, 12, 3), np.uint8), levels=levels, black_level=[10, 20, 30, 40],
                        white_level=1023.0, thumb=None, exif=None, wb=None, cam2rgb=None, rgb2cam=None)
    full = arrays.mosaic
    assert full[0, 0] == pytest.approx((levels[0, 0] - 10) / 1013) and full[1, 1] == pytest.approx((levels[1, 1] - 40) / 983)
    for top, left in ((0, 0), (1, 0), (0, 1), (3, 5)):
        np.testing.assert_array_equal(arrays.mosaic_window(top, left, 4, 6), full[top:top + 4, left:left + 6])


def test_dataset_crops_keep_rggb_phase_under_flips(tmp_path):
    """The RAW of every crop is the RGGB mosaic of its sRGB: true only if flips keep the phase."""
    from PIL import Image

    from rawedge.data.dataset import PairDataset, bayer_safe_crop
    from rawedge.data.manifest import Manifest, Sample
    from rawedge.types import CameraProfile

    rng = np.random.default_rng(1)
    srgb = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)  # every pixel distinct colours: phase errors show
    mosaic = ops.mosaic(srgb.astype(np.float32) / 255.0, "RGGB")
    (tmp_path / "raw").mkdir()
    (tmp_path / "srgb").mkdir()
    Image.fromarray(np.round(mosaic * 65535).astype(np.uint16)).save(tmp_path / "raw/a.png")
    Image.fromarray(srgb).save(tmp_path / "srgb/a.png")
    sample = Sample(id="a", source="a", camera="generic", kind="synthetic", split="train", srgb="srgb/a.png",
                    raw="raw/a.png", height=40, width=50, black_level=[0.0] * 4, white_level=65535.0,
                    wb=[1.0, 1.0, 1.0], cam2rgb=np.eye(3).tolist())
    Manifest(cameras={"generic": CameraProfile.generic().to_dict()}, samples=[sample]).save(tmp_path)
    ds = PairDataset(tmp_path, "train", crop=16, crops_per_image=64, flips=True, seed=7)
    flips = set()
    for i in range(len(ds)):
        item = ds[i]
        expected = ops.pack(ops.mosaic(np.moveaxis(item["srgb"].numpy(), 0, -1), "RGGB"), "RGGB")
        np.testing.assert_allclose(item["raw"].numpy(), expected, atol=1e-4)
        assert item["srgb"].shape == (3, 16, 16) and item["raw"].shape == (4, 8, 8)
        assert item["thumb"].shape == (3, 256, 256)
        _, _, fv, fh = bayer_safe_crop(np.random.default_rng([7, 0, i]), 40, 50, 16, True)
        flips.add((fv, fh))
    assert flips == {(False, False), (True, False), (False, True), (True, True)}
    # control: flipping an even-aligned crop without the one-pixel shift breaks the phase
    crop_srgb, crop_raw = srgb[0:16, 0:16, :] / 255.0, mosaic[0:16, 0:16]
    wrong = ops.pack(crop_raw[:, ::-1], "RGGB")
    right = ops.pack(ops.mosaic(crop_srgb[:, ::-1], "RGGB"), "RGGB")
    assert np.abs(wrong - right).max() > 0.1
    with pytest.raises(RawedgeError, match="larger than"):
        PairDataset(tmp_path, "train", crop=64)
