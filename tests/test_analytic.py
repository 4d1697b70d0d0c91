"""The analytic reverse ISP: render -> unprocess -> render on real files, and exact inversion."""
import numpy as np

from rawedge.io.dng import write_dng
from rawedge.io.raw import read_raw
from rawedge.io.render import render_raw
from rawedge.isp.pipeline import process, unprocess
from rawedge.metrics import psnr
from rawedge.types import CameraProfile, RawImage


def test_unprocess_inverts_process_on_smooth_images():
    prof = CameraProfile.generic()
    y, x = np.mgrid[0:32, 0:32] / 32.0
    mosaic_rgb = np.stack([0.2 + 0.3 * x, 0.3 + 0.2 * y, 0.25 + 0.1 * x * y], -1).astype(np.float32)
    from rawedge.isp.ops import mosaic

    m = mosaic(mosaic_rgb, prof.cfa)
    srgb = process(m, prof.cfa, np.array([1.8, 1.0, 1.5]), prof.cam2rgb())
    back = unprocess(srgb, prof, np.array([1.8, 1.0, 1.5]))
    assert psnr(back[2:-2, 2:-2], m[2:-2, 2:-2]) > 45


def test_render_unprocess_render_real_files(canon_raw, kodak_raw, tmp_path):
    for path, floor in ((canon_raw, 40.0), (kodak_raw, 33.0)):
        raw = read_raw(path)
        srgb = render_raw(path).astype(np.float32) / 255
        mosaic = unprocess(srgb, raw.profile, raw.wb_gains())
        assert psnr(mosaic, raw.normalized()) > 28.0
        write_dng(tmp_path / "u.dng", RawImage.from_normalized(mosaic, raw.profile, raw.wb_gains(), raw.exif))
        again = render_raw(tmp_path / "u.dng").astype(np.float32) / 255
        assert psnr(again, srgb) > floor, path.name
