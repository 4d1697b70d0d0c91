"""JPEG-engine renderings, cross-camera reprojection, camera sampling, levels/noise and fisheye masks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rawedge.data import crosscam, engines, gopro
from rawedge.isp import ops, pipeline
from rawedge.types import SRGB_TO_XYZ, srgb_cam2rgb

# XYZ->camera (D65) of two real cameras, LibRaw's adobe_coeff / 10000
CANON_5D = np.array([6347, -479, -972, -8297, 15954, 2480, -1968, 2131, 7649], float).reshape(3, 3) / 1e4
NIKON_D700 = np.array([8139, -2171, -663, -8747, 16541, 2295, -1925, 2008, 8093], float).reshape(3, 3) / 1e4
ILLUMINANT_A_XYZ = np.array([1.09850, 1.0, 0.35585])
GOPRO_DIR = Path("/work/shared/data/raw-gopro")


def _scene(rng, h=64, w=96):
    """Linear camera RGB with gradients, texture and a few sensor-saturated pixels."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([0.3 + 0.25 * np.sin(x / (5 + 3 * c)) * np.cos(y / 7) for c in range(3)], axis=-1)
    img = np.clip(img + rng.uniform(0, 0.1, img.shape), 0, 1).astype(np.float32)
    img[:4, :4] = 1.0
    return img


# ---- render_like_engine ----

def test_plain_style_is_the_pipelines_rendering_exactly():
    rng = np.random.default_rng(0)
    mosaic = ops.mosaic(_scene(rng), "RGGB")
    gains, cam2rgb = np.array([2.1, 1.0, 1.55]), srgb_cam2rgb(CANON_5D)
    expected = np.clip(np.round(pipeline.process(mosaic, "RGGB", gains, cam2rgb) * 255.0), 0, 255).astype(np.uint8)
    out, settings = engines.render_like_engine(ops.demosaic_bilinear(mosaic, "RGGB"), gains, cam2rgb,
                                               np.random.default_rng(5), style="plain")
    assert out.dtype == np.uint8 and out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)
    assert settings["tone"] == {"family": "srgb"} and settings["ev"] == 0.0 and settings["sharpen"] is None


@pytest.mark.parametrize("family", engines.TONE_FAMILIES)
def test_each_tone_family_is_monotonic_on_a_ramp(family):
    ramp = np.broadcast_to(np.linspace(0, 1, 512, dtype=np.float32)[None, :, None], (16, 512, 3)).copy()
    for seed in range(6):
        out, settings = engines.render_like_engine(ramp, [1.0, 1.0, 1.0], np.eye(3), np.random.default_rng(seed),
                                                   style=family)
        assert settings["tone"]["family"] == family
        row = out[8].astype(int)
        assert np.all(np.diff(row, axis=0) >= 0), (family, seed, settings)
        assert row[-1].min() >= 250 or settings["ev"] < 0  # white stays (near) white unless darkened


@pytest.mark.parametrize("curve", [engines.bt709_curve, lambda x: engines.hable_curve(x, 1.0),
                                   lambda x: engines.hable_curve(x, 4.0), lambda x: engines.aces_curve(x, 0.4),
                                   lambda x: engines.aces_curve(x, 1.0), lambda x: engines.scurve_curve(x, 0.9)])
def test_global_curves_map_0_to_0_and_1_to_1_monotonically(curve):
    x = np.linspace(0, 1, 4097, dtype=np.float32)
    y = curve(x)
    assert np.all(np.diff(y) >= -1e-6)
    assert abs(float(y[0])) < 1e-6 and abs(float(y[-1]) - 1.0) < 1e-5


def test_highlight_shoulder_is_monotonic_and_ends_on_white():
    for gain, knee in ((1.3, 0.6), (2.8, 0.9)):
        x = np.linspace(0, gain, 2001, dtype=np.float32)
        y = engines.highlight_shoulder(x, gain, knee)
        assert np.all(np.diff(y) >= 0) and abs(float(y[-1]) - 1.0) < 1e-5
        np.testing.assert_array_equal(y[x <= knee], x[x <= knee])


def test_local_tone_mapping_lifts_shadows():
    img = np.full((96, 192, 3), 0.5, np.float32)
    img[:, :96] = 0.02  # a shadow half
    img += np.random.default_rng(1).uniform(0, 0.01, img.shape).astype(np.float32)
    for seed in range(4):  # same seed: same draws, only the tone family differs
        local, _ = engines.render_like_engine(img, [1, 1, 1], np.eye(3), np.random.default_rng(seed), style="local")
        srgb, _ = engines.render_like_engine(img, [1, 1, 1], np.eye(3), np.random.default_rng(seed), style="srgb")
        shadow = (slice(16, 80), slice(8, 72))
        assert local[shadow].mean() > srgb[shadow].mean() + 5


def test_render_is_deterministic_records_json_settings_and_checks_shapes():
    img = _scene(np.random.default_rng(2))
    families = set()
    for seed in range(12):
        a, sa = engines.render_like_engine(img, [1.8, 1, 1.4], srgb_cam2rgb(NIKON_D700), np.random.default_rng(seed))
        b, sb = engines.render_like_engine(img, [1.8, 1, 1.4], srgb_cam2rgb(NIKON_D700), np.random.default_rng(seed))
        np.testing.assert_array_equal(a, b)
        assert json.loads(json.dumps(sa)) == sb
        assert -1.0 <= sa["ev"] <= 1.5
        families.add(sa["tone"]["family"])
    assert len(families) >= 4
    with pytest.raises(ValueError):
        engines.render_like_engine(img[..., :2], [1, 1, 1], np.eye(3), np.random.default_rng(0))
    with pytest.raises(ValueError):
        engines.render_like_engine(img, [1, 1], np.eye(3), np.random.default_rng(0))
    with pytest.raises(ValueError):
        engines.render_like_engine(img, [1, 1, 1], np.eye(3), np.random.default_rng(0), style="vivid")
    qualities = {engines.sample_jpeg_quality(np.random.default_rng(s)) for s in range(200)}
    assert min(qualities) >= 70 and max(qualities) <= 98 and len(qualities) > 15


# ---- cross-camera reprojection ----

def test_reprojection_with_the_same_camera_is_the_identity():
    packed = np.random.default_rng(3).uniform(0, 0.9, (4, 20, 30)).astype(np.float32)
    out = crosscam.reproject_to_camera(packed, CANON_5D, CANON_5D)
    green = 0.5 * (packed[1] + packed[2])
    np.testing.assert_allclose(out, np.stack([packed[0], green, green, packed[3]]), atol=1e-6)


@pytest.mark.parametrize("illuminant", [SRGB_TO_XYZ @ np.ones(3), ILLUMINANT_A_XYZ])
def test_a_grey_in_camera_a_is_grey_in_camera_b_after_bs_white_balance(illuminant):
    rng = np.random.default_rng(4)
    neutral_a = crosscam.normalize_xyz_to_cam(CANON_5D) @ illuminant
    packed = rng.uniform(0.05, 0.5, (4, 16, 16)).astype(np.float32)  # other content moves the green mean
    patch = (slice(4, 10), slice(4, 10))
    for ch, value in enumerate(np.array([neutral_a[0], neutral_a[1], neutral_a[1], neutral_a[2]]) * 0.3):
        packed[ch][patch] = value
    out = crosscam.reproject_to_camera(packed, CANON_5D, NIKON_D700)
    gains_b = 1.0 / (crosscam.normalize_xyz_to_cam(NIKON_D700) @ illuminant)  # B's own WB for that light
    rgb = np.array([out[0][patch].mean(), out[1][patch].mean(), out[3][patch].mean()]) * gains_b
    assert np.all(np.abs(rgb / rgb[1] - 1.0) < 0.02), rgb / rgb[1]
    assert abs(out[1].mean() - 0.5 * (packed[1] + packed[2]).mean()) < 1e-3  # green level kept


def test_reprojection_keeps_saturated_channels_saturated_and_clips():
    packed = np.full((4, 8, 8), 0.4, np.float32)
    packed[:, 0, 0] = 1.0  # all channels saturated
    packed[0, 1, 1] = 1.0  # red only
    packed[2, 2, 2] = 1.0  # one green
    out = crosscam.reproject_to_camera(packed, CANON_5D, NIKON_D700)
    assert out.shape == packed.shape and out.dtype == np.float32
    assert np.all(out[:, 0, 0] == 1.0)
    assert out[0, 1, 1] == 1.0
    assert out[1, 2, 2] == 1.0 and out[2, 2, 2] == 1.0
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(out[1], out[2])
    with pytest.raises(ValueError):
        crosscam.reproject_to_camera(packed[:3], CANON_5D, NIKON_D700)


# ---- camera database sampling ----

def _entries() -> list:
    from rawedge.cameradb import Entry

    def entry(maker, prefix, matrix, black=0, white=0):
        return Entry(maker, prefix, black, white, tuple(tuple(r) for r in np.asarray(matrix).round(4).tolist()))

    return [entry("Canon", "PowerShot G2", CANON_5D * 1.1), entry("Canon", "PowerShot S40", CANON_5D * 0.9),
            entry("Canon", "EOS 5D", CANON_5D, 128, 3692), entry("Kodak", "DC120", NIKON_D700 * 1.2),
            entry("GoPro", "HERO6 Black", NIKON_D700 * 0.8, 0, 16383), entry("Nikon", "D700", NIKON_D700),
            entry("Sony", "ILCE-7", CANON_5D * 1.05), entry("Leica", "M8", np.zeros((3, 3)))]


def test_excluded_makers_and_prefixes_are_never_drawn():
    db = _entries()
    drawn = crosscam.sample_camera_profiles(np.random.default_rng(0), 300, exclude_makers=["kodak", "GOPRO"],
                                            exclude_prefixes=[("Canon", "powershot")], entries=db)
    names = {p.name for p in drawn}
    assert names == {"Canon EOS 5D", "Nikon D700", "Sony ILCE-7"}  # Leica: no usable matrix
    assert all(np.asarray(p.color_matrix).shape == (3, 3) for p in drawn)
    by_prefix = crosscam.sample_camera_profiles(np.random.default_rng(0), 50, exclude_prefixes=["HERO"], entries=db)
    assert all(p.make != "GoPro" for p in by_prefix)
    again = crosscam.sample_camera_profiles(np.random.default_rng(7), 3, entries=db)
    assert [p.name for p in again] == [p.name for p in
                                       crosscam.sample_camera_profiles(np.random.default_rng(7), 3, entries=db)]
    assert len({p.name for p in again}) == 3  # without replacement while there are enough
    with pytest.raises(ValueError):
        crosscam.sample_camera_profiles(np.random.default_rng(0), 1, exclude_makers=["canon", "kodak", "gopro",
                                                                                      "nikon", "sony"], entries=db)


def test_the_bundled_camera_db_honours_leave_one_family_out():
    drawn = crosscam.sample_camera_profiles(np.random.default_rng(0), 500, exclude_makers=["Kodak", "GoPro"],
                                            exclude_prefixes=[("Canon", "PowerShot")])
    assert not any(p.make.lower() in ("kodak", "gopro") for p in drawn)
    assert not any(p.make.lower() == "canon" and "powershot" in p.name.lower() for p in drawn)
    assert len({p.name for p in drawn}) > 100


# ---- levels and noise ----

def test_levels_are_plausible_and_noise_grows_with_signal():
    for seed in range(50):
        p = crosscam.sample_levels_and_noise(np.random.default_rng(seed), 0)
        assert p["white"] in (4095.0, 16383.0) and 0 <= p["black"] <= 0.061 * p["white"]
        assert 1e-5 < p["shot"] < 3e-3 and 0 < p["read"] < 2e-4
        json.dumps(p)
    assert crosscam.sample_levels_and_noise(np.random.default_rng(0), 3692)["white"] == 3692.0
    packed = np.concatenate([np.full((4, 64, 128), 0.05, np.float32), np.full((4, 64, 128), 0.6, np.float32)], axis=2)
    out = crosscam.apply_levels_and_noise(packed, 256, 16383, 2e-3, 1e-6, np.random.default_rng(0))
    assert out.dtype == np.uint16 and out.shape == packed.shape
    normalized = (out.astype(np.float64) - 256) / (16383 - 256)
    dark, bright = normalized[..., :128], normalized[..., 128:]
    assert bright.std() > 2.5 * dark.std()
    assert abs(dark.mean() - 0.05) < 2e-3 and abs(bright.mean() - 0.6) < 2e-3
    np.testing.assert_array_equal(out, crosscam.apply_levels_and_noise(packed, 256, 16383, 2e-3, 1e-6,
                                                                       np.random.default_rng(0)))


# ---- fisheye masks ----

def test_fisheye_circle_is_found_on_a_synthetic_fisheye_and_crops_stay_inside():
    rng = np.random.default_rng(0)
    h, w, cy, cx, r = 600, 640, 290.0, 330.0, 310.0
    yy, xx = np.mgrid[0:h, 0:w]
    inside = (yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2 < r * r
    mosaic = np.where(inside, rng.uniform(0.02, 0.6, (h, w)), rng.uniform(0, 4e-4, (h, w))).astype(np.float32)
    mosaic[250:330, 10:60] = 0.0  # a black object touching the rim must not bend the fit
    fy, fx, fr = gopro.fit_image_circle(mosaic)
    assert abs(fy - cy) < 4 and abs(fx - cx) < 4 and abs(fr - r) < 4
    mask = gopro.fisheye_valid_mask(mosaic)
    assert mask.shape == (h, w) and not mask[0, 0] and not mask[-1, -1] and mask[int(cy), int(cx)]
    assert np.all(inside[mask])
    origins = gopro.valid_crop_origins(mask, 64)
    assert len(origins) > 0 and np.all(origins % 2 == 0)
    for top, left in origins[:: max(1, len(origins) // 200)]:
        assert mask[top:top + 64, left:left + 64].all()
    expected = sum(mask[t:t + 64, s:s + 64].all() for t in range(0, h - 63, 2) for s in range(0, w - 63, 2))
    assert len(origins) == expected
    top, left = gopro.random_valid_crop(np.random.default_rng(1), mask, 64)
    assert mask[top:top + 64, left:left + 64].all()
    assert gopro.random_valid_crop(rng, np.zeros((100, 100), bool), 64) is None
    assert gopro.fisheye_valid_mask(rng.uniform(0.05, 0.8, (200, 300)).astype(np.float32)).all()


@pytest.mark.skipif(not GOPRO_DIR.is_dir(), reason="shared GoPro RAWs (/work/shared/data/raw-gopro) not present")
def test_fusion_image_circle_on_the_real_files_and_hero_is_all_valid():
    from rawedge.io.raw import read_raw

    for name in ("GoPro_FUSION_front_GPFR7066.dng", "GoPro_FUSION_back_GPBK7066.dng"):
        mosaic = read_raw(GOPRO_DIR / name).normalized()
        h, w = mosaic.shape
        cy, cx, r = gopro.fit_image_circle(mosaic)
        assert 0.9 * h < 2 * r < 1.1 * w  # a circle spanning most of the frame height (cut top and bottom)
        assert abs(cy - h / 2) < 0.05 * h and abs(cx - w / 2) < 0.05 * w
        mask = gopro.fisheye_valid_mask(mosaic)
        assert not mask[0, 0] and not mask[0, -1] and not mask[-1, 0] and not mask[-1, -1]
        assert mask[h // 2, w // 2] and 0.65 < mask.mean() < 0.85
        assert np.percentile(mosaic[~mask], 50) < np.percentile(mosaic[mask], 50) / 5
    hero = read_raw(GOPRO_DIR / "GoPro_HERO6_GOPR0024.dng").normalized()
    assert gopro.fisheye_valid_mask(hero).all()
