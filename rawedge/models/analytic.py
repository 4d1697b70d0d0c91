"""The analytic reverse ISP as a registry model (no weights): the baseline every learned model is
compared with, exportable and runnable like any other."""
from __future__ import annotations

from rawedge.models.base import ReverseISP, analytic_packed, check_metering, metering_gain
from rawedge.models.registry import register_model


@register_model("analytic")
class AnalyticISP(ReverseISP):
    """Brooks et al. (2019) unprocessing: inverse sRGB curve, inverse colour matrix, inverse WB, mosaic.

    ``metering_weight`` (kappa in [0, 1], default 0): the result is moved toward ISO 12232's metered
    exposure by kappa, in log, one gain per photo from the thumbnail (rawedge.models.base.metering_gain).
    With kappa fitted on other camera families (rawedge.training.metering) it beats the plain inverse on
    every held-out camera of ../shared (docs/lofo-round7-exposure.md, section 6).
    ``metering_knee`` (None or in [0, 1)): the weight applies only as far as the JPEG's highlights reach
    above the knee toward white (rawedge.models.base.highlight_gate; docs/lofo-round8-highlights.md)."""

    default_config: dict = {"metering_weight": 0.0, "metering_knee": None}
    align = 2

    def __init__(self, metering_weight: float = 0.0, metering_knee: float | None = None):
        super().__init__()
        check_metering(metering_weight, metering_knee)
        self.metering_weight = float(metering_weight)
        self.metering_knee = None if metering_knee is None else float(metering_knee)

    def forward(self, srgb, thumb, exif, wb, cam2rgb, rgb2cam):
        raw = analytic_packed(srgb, wb, rgb2cam)
        if self.metering_weight:
            raw = (raw * metering_gain(analytic_packed(thumb, wb, rgb2cam), self.metering_weight,
                                      self.metering_knee)).clamp(0.0, 1.0)
        return {"raw": raw}
