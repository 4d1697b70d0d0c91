import json

import numpy as np
import pytest

from rawedge.errors import RawedgeError
from rawedge.types import CameraProfile, Exif, RawImage


def test_exif_vector_marks_missing_as_nan():
    v = Exif(exposure_time=0.01, iso=None, f_number=2.8, focal_length=None).to_vector()
    assert v.dtype == np.float32 and v.shape == (4,)
    assert v[0] == np.float32(0.01) and np.isnan(v[1]) and v[2] == np.float32(2.8) and np.isnan(v[3])


def test_profile_json_round_trip(tmp_path):
    p = CameraProfile(name="cam", cfa="GRBG", black_level=[1, 2, 3, 4], white_level=1000,
                      color_matrix=[[1, 0, 0], [0, 1, 0], [0, 0, 2]], make="A", model="B")
    p.save(tmp_path / "p.json")
    q = CameraProfile.load(tmp_path / "p.json")
    assert q == p
    assert np.allclose(q.cam2rgb() @ np.linalg.inv(q.cam2rgb()), np.eye(3))


def test_profile_without_matrix_is_identity_and_marked_unknown():
    p = CameraProfile(name="k", color_matrix=None)
    assert not p.has_color_matrix
    assert np.allclose(p.cam2rgb(), np.eye(3))


@pytest.mark.parametrize("bad", ["[1, 2]", "{\"name\": \"x\", \"cfa\": \"RGBW\"}", "not json",
                                 "{\"name\": \"x\", \"white_level\": 0}"])
def test_bad_profile_json_is_a_clear_error(tmp_path, bad):
    f = tmp_path / "bad.json"
    f.write_text(bad)
    with pytest.raises(RawedgeError) as e:
        CameraProfile.load(f)
    assert str(f) in str(e.value)


def test_cam2rgb_rows_keep_neutral_neutral():
    m = CameraProfile.generic().cam2rgb()
    assert np.allclose(m.sum(axis=1), 1.0, atol=1e-6)


def test_normalized_uses_per_position_black(rng):
    p = CameraProfile(name="c", cfa="RGGB", black_level=[10, 20, 30, 40], white_level=110)
    bayer = np.array([[10, 20], [30, 40]], dtype=np.uint16)
    r = RawImage(bayer=np.tile(bayer, (2, 2)), cfa="RGGB", black_level=np.array(p.black_level),
                 white_level=110, as_shot_neutral=np.ones(3), profile=p)
    assert np.all(r.normalized() == 0)
    mosaic = rng.random((6, 8)).astype(np.float32)
    back = RawImage.from_normalized(mosaic, p, np.array([2.0, 1.0, 1.5])).normalized()
    assert np.abs(back - mosaic).max() < 1.0 / 70 + 1e-6
    assert json.dumps(p.to_dict())
