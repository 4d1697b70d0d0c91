"""Concurrency: the embedding API (one Reconstructor) from 8 threads on different photos gives the serial
results on every runtime; concurrent writers to one directory or one path never see each other's
temporaries or a mixed file."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from rawedge.runtimes import Reconstructor

from rawedge.io.photo import read_photo
from rawedge.types import Exif
from tests.conftest import ROOT, SAMPLE_JPEG
from tests.test_faults import HOLD_AT_RENAME, kill, temporaries, wait_for


@pytest.fixture(scope="module")
def model(tiny_unet):
    return tiny_unet[0]


def jobs():
    """8 different photos: sizes (odd ones too), cameras (RGGB and GRBG profiles), white balances."""
    photo = read_photo(SAMPLE_JPEG)
    cameras = ["Canon PowerShot S40", "Kodak DC120 ZOOM Digital Camera", None, "Canon PowerShot G2"]
    out = []
    for i in range(8):
        y, x = 17 * i, 23 * i
        crop = np.ascontiguousarray(photo.srgb[y:y + 70 + 9 * i, x:x + 95 + 7 * i])
        if i % 3 == 2:
            crop = crop.astype(np.uint16) * 257  # 16-bit input in the mix
        exif = Exif(model=cameras[i % 4], iso=100 * (i + 1), exposure_time=1 / (30 * (i + 1)))
        wb = None if i % 2 else [1.5 + 0.1 * i, 1.0, 1.8 - 0.1 * i]
        out.append((crop, exif, wb))
    return out


@pytest.mark.parametrize("runtime", ["ort", "openvino"])
def test_eight_threads_give_the_serial_results(model, runtime):
    if runtime == "openvino":
        pytest.importorskip("openvino")
    work = jobs()
    with Reconstructor.open(model, runtime=runtime, tile=64, overlap=16, batch=3, threads=1) as rec:
        serial = [rec(srgb, exif=exif, wb=wb) for srgb, exif, wb in work]
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in range(2):  # twice: requests and sessions are reused across calls
                threaded = list(pool.map(lambda job: rec(job[0], exif=job[1], wb=job[2]), work))
                for (srgb, _, _), a, b in zip(work, serial, threaded):
                    assert b.bayer.shape == srgb.shape[:2]
                    np.testing.assert_array_equal(a.bayer, b.bayer)
                    assert a.cfa == b.cfa and a.profile.name == b.profile.name
                    np.testing.assert_allclose(a.as_shot_neutral, b.as_shot_neutral)
    assert {r.cfa for r in serial} == {"RGGB", "GRBG"}  # the cameras really differed


def test_a_live_run_keeps_its_temporary_while_another_run_writes_beside_it(model, tmp_path):
    """Run A is held at its rename; run B writes into the same directory (cleaning stale temporaries on
    the way). A's temporary belongs to a live process, so it is kept, and A then finishes normally."""
    out = tmp_path / "out"
    out.mkdir()
    mark, go = tmp_path / "mark", tmp_path / "go"
    env = {**os.environ, "HOLD_MARK": str(mark), "HOLD_SUFFIX": "a.dng", "HOLD_GO": str(go), "OMP_NUM_THREADS": "1"}
    a = subprocess.Popen([sys.executable, "-c", HOLD_AT_RENAME, "infer", str(SAMPLE_JPEG), "--model", str(model),
                          "-o", str(out / "a.dng"), "--tile", "128"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(mark, a)
        held = Path(mark.read_text()).name
        b = subprocess.run([sys.executable, "-m", "rawedge.cli", "infer", str(SAMPLE_JPEG), "--model", str(model), "-o",
                            str(out / "b.dng"), "--tile", "128"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                           check=False)
        assert b.returncode == 0, b.stderr
        assert temporaries(out) == [held]  # B did not take A's file for a dead run's leftover
        go.write_text("go")
        assert a.wait(timeout=120) == 0, a.stdout.read()
        a.stdout.close()
    finally:
        if a.poll() is None:
            kill(a)
    from rawedge.io.raw import read_raw

    assert temporaries(out) == []
    np.testing.assert_array_equal(read_raw(out / "a.dng").bayer, read_raw(out / "b.dng").bayer)


def test_writers_racing_for_one_path_leave_one_whole_file(tmp_path):
    from rawedge.io.dng import write_dng
    from rawedge.io.raw import read_raw
    from rawedge.types import CameraProfile, RawImage

    profile = CameraProfile.generic()
    raws = [RawImage.from_normalized(np.full((40, 60), (i + 1) / 10, np.float32), profile, np.array([2.0, 1.0, 1.5]))
            for i in range(8)]
    target = tmp_path / "same.dng"

    def write(raw):
        for _ in range(5):
            write_dng(target, raw)
            time.sleep(0.001)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, raws))
    back = read_raw(target).bayer
    assert any(np.array_equal(back, r.bayer) for r in raws)  # one writer's whole file, never a mix
    assert temporaries(tmp_path) == []
