"""The analytic reverse ISP as a registry model (no weights): the baseline every learned model is
compared with, exportable and runnable like any other."""
from __future__ import annotations

from rawedge.models.base import ReverseISP, analytic_packed
from rawedge.models.registry import register_model


@register_model("analytic")
class AnalyticISP(ReverseISP):
    """Brooks et al. (2019) unprocessing: inverse sRGB curve, inverse colour matrix, inverse WB, mosaic."""

    default_config: dict = {}
    align = 2

    def forward(self, srgb, thumb, exif, wb, cam2rgb, rgb2cam):
        return {"raw": analytic_packed(srgb, wb, rgb2cam)}
