"""The multi-camera mix and the leave-one-family-out folds (rawedge.data.mix) on two real RAW files."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import KODAK_DIR, RAW_DIR, needs_shared


def test_family_of_cameras():
    from rawedge.data.mix import family_of

    assert family_of("Canon", "Canon PowerShot G2") == "canon_powershot"
    assert family_of("Canon", "Canon EOS 5D") == "none"  # same maker, not the held-out compacts
    assert family_of("Kodak", "DCS620X") == family_of("Eastman Kodak Company", "KODAK DC50") == "kodak"
    assert family_of("GoPro", "HERO7 Black") == "gopro"
    assert family_of(None, None) == "none"


@pytest.fixture(scope="module")
def small_mix(tmp_path_factory):
    if not (RAW_DIR / "Canon_PowerShot_G2_CRW_0304.CRW").is_file():
        pytest.skip(f"shared RAW files not found in {RAW_DIR}")
    from rawedge.data.mix import MixOptions, build_eval_set, build_pool

    root = tmp_path_factory.mktemp("mix")
    raws, photos = root / "raws", root / "photos"
    raws.mkdir()
    photos.mkdir()
    for name in ("Canon_PowerShot_G2_CRW_0304.CRW", "Kodak_DC50_DC50IMG_DC0009L.KDC"):
        (raws / name).symlink_to(RAW_DIR / name)
    (photos / "kodim03.png").symlink_to(KODAK_DIR / "kodim03.png")
    options = MixOptions(libraw=1, engine=1, crosscam=2, synthetic=3, max_side=512, seed=0)
    return root, build_pool([raws], photos, root / "pool", options), build_eval_set([raws], root / "eval", max_side=512)


@needs_shared
def test_pool_has_every_kind_tagged_with_families(small_mix):
    _, pool, _ = small_mix
    kinds = {s.kind for s in pool.samples}
    assert kinds == {"libraw", "engine", "camera_jpeg", "crosscam", "synthetic"}
    for s in pool.samples:
        assert s.settings["source_family"] in ("canon_powershot", "kodak", "none")
        assert "camera_family" in s.settings
        assert s.camera in pool.cameras
    crosscam = [s for s in pool.samples if s.kind == "crosscam"]
    assert len(crosscam) == 2  # only the Canon file has a colour matrix to re-project from
    assert all(s.source.startswith("Canon") and s.camera != "Canon PowerShot G2" for s in crosscam)
    simulated = {name for name, c in pool.cameras.items() if c.get("simulated")}  # never embedded in a model
    assert simulated == {s.camera for s in pool.samples if s.kind in ("crosscam", "synthetic")}
    assert "Canon PowerShot G2" not in simulated
    assert all(max(s.height, s.width) <= 512 for s in pool.samples if s.kind in ("libraw", "engine", "crosscam"))


@needs_shared
def test_fold_leaves_out_the_family_files_and_cameras(small_mix, tmp_path):
    from rawedge.data.dataset import PairDataset
    from rawedge.data.mix import fold_manifest

    root, pool, _ = small_mix
    fold = fold_manifest(root / "pool", "kodak", tmp_path / "fold")
    assert fold.samples and len(fold.samples) < len(pool.samples)
    assert not any("kodak" in (s.settings["source_family"], s.settings["camera_family"]) for s in fold.samples)
    assert any(s.settings["source_family"] == "canon_powershot" for s in fold.samples)
    item = PairDataset(tmp_path / "fold", "train", crop=64)[0]  # the fold's links reach the pool's files
    assert item["raw"].shape == (4, 32, 32)
    with pytest.raises(ValueError, match="unknown family"):
        fold_manifest(root / "pool", "nikon", tmp_path / "x")


@needs_shared
def test_eval_set_renderings(small_mix):
    _, _, evals = small_mix
    by_source = {}
    for s in evals.samples:
        by_source.setdefault(s.source, set()).add(s.kind)
        assert s.split == "val"
    assert by_source["Canon_PowerShot_G2_CRW_0304.CRW"] == {"libraw_default", "libraw", "engine", "camera_jpeg"}
    assert by_source["Kodak_DC50_DC50IMG_DC0009L.KDC"] == {"libraw_default", "libraw", "engine"}
    default = next(s for s in evals.samples if s.kind == "libraw_default")
    assert default.settings["auto_bright"] is True and default.settings["gamma"] == [2.222, 4.5]


def test_engine_crosscam_pair_is_consistent():
    """A cross-camera mosaic rendered plainly and unprocessed analytically comes back (the pair agrees)."""
    from rawedge.data.crosscam import sample_camera_profiles
    from rawedge.data.engines import render_like_engine
    from rawedge.isp import pipeline
    from rawedge.isp.ops import demosaic_malvar, mosaic

    rng = np.random.default_rng(0)
    profile = sample_camera_profiles(rng, 1)[0]
    y, x = np.mgrid[0:64, 0:64] / 64.0
    rgb = np.stack([0.2 + 0.15 * np.sin(6 * x + c) * np.cos(4 * y) for c in range(3)], -1).astype(np.float32)
    raw = mosaic(rgb, "RGGB")
    wb = profile.typical_wb_gains()
    srgb, _ = render_like_engine(np.clip(demosaic_malvar(raw, "RGGB"), 0, 1), wb, profile.cam2rgb(), rng,
                                 style="plain")
    back = pipeline.unprocess(srgb.astype(np.float32) / 255, profile, wb, cfa="RGGB")
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(back[inner] - raw[inner]).mean() < 0.01


def test_pool_style_share_of_plain_looks():
    from rawedge.data.mix import PLAIN_LIKE_STYLES, MixOptions, _pool_style

    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert _pool_style(rng, MixOptions(plain_fraction=0.0)) is None and rng.bit_generator.state == state  # 0: no draw
    assert all(_pool_style(rng, MixOptions(plain_fraction=1.0)) in PLAIN_LIKE_STYLES for _ in range(20))
    half = [_pool_style(rng, MixOptions(plain_fraction=0.5)) for _ in range(400)]
    assert 150 < sum(s is not None for s in half) < 250


@needs_shared
def test_pool_options_for_default_renderings_and_overexposed_captures(tmp_path):
    """libraw_default adds LibRaw's default look of each file; overexposed adds an engine rendering of the
    mosaic pushed brighter and clipped, whose target mosaic is that brighter one (not the file's)."""
    from PIL import Image

    from rawedge.data.mix import MixOptions, build_pool

    raws = tmp_path / "raws"
    raws.mkdir()
    (raws / "Canon_PowerShot_G2_CRW_0304.CRW").symlink_to(RAW_DIR / "Canon_PowerShot_G2_CRW_0304.CRW")
    options = MixOptions(libraw=0, engine=0, crosscam=0, synthetic=0, max_side=256, libraw_default=1, overexposed=1)
    pool = build_pool([raws], None, tmp_path / "pool", options)
    by_kind = {s.kind: s for s in pool.samples if s.kind in ("libraw_default", "engine")}
    assert set(by_kind) == {"libraw_default", "engine"} and by_kind["libraw_default"].settings["auto_bright"]
    over, default = by_kind["engine"], by_kind["libraw_default"]
    assert over.raw != default.raw  # its own, brighter target
    level = {k: np.asarray(Image.open(tmp_path / "pool" / s.raw), np.float64).mean() for k, s in by_kind.items()}
    assert level["engine"] > 1.3 * level["libraw_default"]


@needs_shared
def test_crosscam_pairs_can_be_re_exposed_to_a_stated_level(tmp_path):
    """crosscam_p99 puts the brightest 1 % of each cross-camera mosaic at a drawn share of camera B's white,
    and leaves every other draw (cameras, levels, noise, looks) as in the unexposed pool."""
    from PIL import Image

    from rawedge.data.mix import MixOptions, build_pool
    from rawedge.data.rggb import normalize_levels

    raws = tmp_path / "raws"
    raws.mkdir()
    (raws / "Canon_PowerShot_G2_CRW_0304.CRW").symlink_to(RAW_DIR / "Canon_PowerShot_G2_CRW_0304.CRW")
    pools = {}
    for name, p99 in (("plain", None), ("exposed", (0.9, 0.9))):
        options = MixOptions(libraw=0, engine=0, crosscam=2, synthetic=0, max_side=256, crosscam_p99=p99)
        pools[name] = build_pool([raws], None, tmp_path / name, options)
    cross = {k: [s for s in pool.samples if s.kind == "crosscam"] for k, pool in pools.items()}
    assert len(cross["plain"]) == len(cross["exposed"]) == 2
    for plain, exposed in zip(cross["plain"], cross["exposed"]):
        assert exposed.camera == plain.camera
        assert exposed.settings["levels"] == plain.settings["levels"]
        levels = normalize_levels(np.asarray(Image.open(tmp_path / "exposed" / exposed.raw), np.float32),
                                  exposed.black_level, exposed.white_level)
        before = normalize_levels(np.asarray(Image.open(tmp_path / "plain" / plain.raw), np.float32),
                                  plain.black_level, plain.white_level)
        assert np.percentile(levels, 99) == pytest.approx(0.9, abs=0.08)  # the max channel's p99, sensor noise aside
        assert np.percentile(before, 99) < 0.8  # the G2 file itself is exposed lower
