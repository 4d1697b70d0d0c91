"""The balanced tile size: never more tiles than the requested size needs, never a larger tile, aligned,
and the grid still covers the frame with at least the requested overlap."""
import numpy as np
import pytest

from rawedge.tiling import Frame, TileGrid, axis_starts, balanced_tile


@pytest.mark.parametrize("length", [64, 496, 1000, 3008, 4000, 8000])
@pytest.mark.parametrize("tile,overlap,align", [(512, 80, 16), (1024, 80, 16), (256, 32, 8)])
def test_balanced_tile_covers_with_no_more_tiles(length, tile, overlap, align):
    t = balanced_tile(length, tile, overlap, align)
    if tile >= length:
        assert t == length
        return
    assert t <= tile and t % align == 0 and t > overlap
    starts, requested = axis_starts(length, t, overlap), axis_starts(length, tile, overlap)
    assert len(starts) <= len(requested)
    assert starts[0] == 0 and starts[-1] + t == length
    assert all(b - a <= t - overlap for a, b in zip(starts, starts[1:]))  # overlap kept everywhere


def test_grid_of_a_12mp_frame_does_less_work():
    frame = Frame.for_photo(3000, 4000, (0, 0), 16)
    plain, balanced = TileGrid.plan(frame, 1024, 80), TileGrid.plan(frame, 1024, 80, align=16)
    assert len(balanced) == len(plain)
    work = [len(g) * g.th * g.tw for g in (plain, balanced)]
    assert work[1] < 0.8 * work[0]
    sy, sx = balanced.weight_sums(frame)
    assert np.all(sy > 0) and np.all(sx > 0)  # every packed row and column is covered
