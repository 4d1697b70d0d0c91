"""Each numpy ISP op against its torch twin (1e-6) and for gradients; library ops against the library."""
import numpy as np
import pytest
import torch

from rawedge.isp import ops
from rawedge.isp import torch_ops as T

CFAS = ["RGGB", "GRBG", "GBRG", "BGGR"]


def _t(x):
    return torch.from_numpy(np.ascontiguousarray(x))


def _img(rng, h=12, w=16):
    return rng.random((h, w, 3)).astype(np.float32)


def _nchw(x):
    return _t(x).permute(2, 0, 1)[None]


@pytest.mark.parametrize("cfa", CFAS)
def test_pack_unpack_mosaic(cfa, rng):
    m = rng.random((8, 10)).astype(np.float32)
    p = ops.pack(m, cfa)
    assert np.array_equal(ops.unpack(p, cfa), m)
    assert np.array_equal(T.pack(_t(m)[None, None], cfa)[0].numpy(), p)
    assert np.array_equal(T.unpack(_t(p)[None], cfa)[0, 0].numpy(), m)
    rgb = _img(rng, 7, 9)  # odd sizes
    assert np.array_equal(T.mosaic(_nchw(rgb), cfa)[0, 0].numpy(), ops.mosaic(rgb, cfa))
    # Packed channel 0 really is red, 3 blue.
    rgb2 = np.zeros((4, 4, 3), np.float32)
    rgb2[..., 0], rgb2[..., 2] = 1.0, 3.0
    packed = ops.pack(ops.mosaic(rgb2, cfa), cfa)
    assert np.all(packed[0] == 1.0) and np.all(packed[3] == 3.0) and np.all(packed[1:3] == 0.0)


@pytest.mark.parametrize("cfa", CFAS)
def test_demosaic_twins(cfa, rng):
    m = rng.random((12, 14)).astype(np.float32)
    bil = ops.demosaic_bilinear(m, cfa)
    assert np.abs(T.demosaic_bilinear(_t(m)[None, None], cfa)[0].permute(1, 2, 0).numpy() - bil).max() < 1e-6
    mal = ops.demosaic_malvar(m.astype(np.float64), cfa)  # colour-demosaicing is the reference
    got = T.demosaic_malvar(_t(m.astype(np.float64))[None, None], cfa)[0].permute(1, 2, 0).numpy()
    assert np.abs(got - mal).max() < 1e-6


@pytest.mark.parametrize("cfa", CFAS)
@pytest.mark.parametrize("shape", [(12, 14), (2, 2), (7, 9), (6, 5)])
def test_bilinear_demosaic_against_scipy(cfa, shape, rng):
    """The packed (even sizes) and full-resolution (odd) paths against a normalised convolution by
    scipy.ndimage (mode "mirror" is numpy's reflect padding)."""
    from scipy.ndimage import correlate

    m = rng.random(shape)
    kernel = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0])
    channel = ops.cfa_channel_map(cfa, *shape)
    want = np.empty(shape + (3,))
    for c in range(3):
        mask = (channel == c).astype(np.float64)
        want[..., c] = np.where(mask > 0, m, correlate(m * mask, kernel, mode="mirror")
                                / correlate(mask, kernel, mode="mirror"))
    assert np.abs(ops.demosaic_bilinear(m.astype(np.float32), cfa) - want).max() < 1e-6


def test_demosaic_recovers_flat_colour():
    rgb = np.ones((10, 10, 3), np.float32) * np.array([0.2, 0.5, 0.7], np.float32)
    for fn in (ops.demosaic_bilinear, ops.demosaic_malvar):
        assert np.allclose(fn(ops.mosaic(rgb, "GRBG"), "GRBG")[2:-2, 2:-2], rgb[2:-2, 2:-2], atol=1e-5)


def test_colour_ops_twins(rng):
    x = _img(rng)
    g = np.array([2.0, 1.0, 1.5], np.float32)
    m = rng.random((3, 3)).astype(np.float32)
    assert np.abs(T.apply_wb(_nchw(x), _t(g))[0].permute(1, 2, 0).numpy() - ops.apply_wb(x, g)).max() < 1e-6
    assert np.abs(T.apply_ccm(_nchw(x), _t(m))[0].permute(1, 2, 0).numpy() - ops.apply_ccm(x, m)).max() < 1e-6
    for np_fn, t_fn in [(ops.srgb_to_linear, T.srgb_to_linear), (ops.linear_to_srgb, T.linear_to_srgb),
                        (ops.smoothstep_tone, T.smoothstep_tone)]:
        assert np.abs(t_fn(_nchw(x))[0].permute(1, 2, 0).numpy() - np_fn(x)).max() < 1e-6, np_fn.__name__
    y = np.clip(x, 0.01, 0.99)
    assert np.abs(T.inverse_smoothstep_tone(_nchw(y))[0].permute(1, 2, 0).numpy()
                  - ops.inverse_smoothstep_tone(y)).max() < 1e-6
    assert np.allclose(ops.inverse_smoothstep_tone(ops.smoothstep_tone(y)), y, atol=1e-5)
    assert np.allclose(ops.srgb_to_linear(ops.linear_to_srgb(x)), x, atol=1e-5)


def test_linear_to_srgb_is_the_piecewise_curve_everywhere():
    """The one-minimum form equals IEC 61966-2-1's two pieces, at the knee, below 0 and above 1 too."""
    x = np.concatenate([np.linspace(-0.5, 1.5, 200_001), np.linspace(0.0030, 0.0033, 10_001)]).astype(np.float32)
    c = np.clip(x.astype(np.float64), 0.0, 1.0)
    reference = np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)
    assert np.abs(ops.linear_to_srgb(x) - reference).max() < 1e-6


def test_pipeline_twins(rng):
    from rawedge.isp.pipeline import process, unprocess
    from rawedge.types import CameraProfile

    prof = CameraProfile(name="t", cfa="GBRG", color_matrix=[[0.9, -0.2, -0.1], [-0.8, 1.6, 0.3], [-0.3, 0.3, 0.8]])
    x, g = _img(rng), np.array([1.9, 1.0, 1.4])
    ref = unprocess(x, prof, g)
    got = T.unprocess(_nchw(x), _t(np.linalg.inv(prof.cam2rgb())).float(), _t(g).float()[None], prof.cfa)
    assert np.abs(got[0, 0].numpy() - ref).max() < 1e-6
    fwd = process(ref, prof.cfa, g, prof.cam2rgb())
    got = T.process(_t(ref)[None, None], prof.cfa, _t(g).float()[None], _t(prof.cam2rgb()).float())
    assert np.abs(got[0].permute(1, 2, 0).numpy() - fwd).max() < 1e-5


@pytest.mark.parametrize("fn", [
    lambda x: T.demosaic_bilinear(T.mosaic(x, "GRBG"), "GRBG"),
    lambda x: T.demosaic_malvar(T.mosaic(x, "RGGB"), "RGGB"),
    lambda x: T.srgb_to_linear(x.clamp(0.05, 0.95)),
    lambda x: T.linear_to_srgb(x.clamp(0.05, 0.95)),
    lambda x: T.inverse_smoothstep_tone(x.clamp(0.05, 0.95)),
    lambda x: T.unpack(T.pack(T.mosaic(x, "BGGR"), "BGGR"), "BGGR"),
])
def test_gradients(fn):
    x = torch.rand(1, 3, 6, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-4)
