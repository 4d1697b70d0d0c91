"""Target-edit fine-tuning (Edit-aware RAW Reconstruction, inference-time design): adapt a model to one
photo and one edit, using a small crop of the true RAW of that photo.

The RAW sample is a crop of the sensor mosaic on the photo's pixel grid (the photo is aligned with the
RAW's visible area, as camera JPEGs and ``rawedge render`` outputs are). It comes either as
- a RAW file of the same shot plus a crop box (LEFT, TOP, WIDTH, HEIGHT in photo pixels), or
- an ``.npz`` holding ``raw`` (HxW mosaic: uint16 sensor levels, or float in [0, 1]), ``top`` and ``left``
  (its position in the photo), ``cfa`` (the Bayer pattern at the photo's origin), and optionally
  ``black_level`` (4, row-major at the photo's origin), ``white_level``, ``wb`` (3 gains) and ``cam2rgb``
  (3x3); :meth:`RawSample.save` writes one, e.g. to store samples at capture time.

Each step runs the model on a window around the sample (the whole photo's thumbnail as ``thumb``) and
minimises raw_weight * MSE(RAW) + srgb_weight * MSE(edited sRGB) on the sample region, both RAWs rendered
with the same fixed edit by ``rawedge.losses.edit_aware.render_edit`` (the paper locks the ISP parameters
to the target edit, e.g. ev = +0.5).
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from rawedge.errors import RawedgeError
from rawedge.metrics import psnr_from_mse

EDIT_KEYS = {"ev": "exposure_ev", "exposure_ev": "exposure_ev", "wb": "wb_scale", "wb_scale": "wb_scale",
             "style": "style", "tone": "tone_base", "tone_base": "tone_base", "curve": "tone_curve",
             "tone_curve": "tone_curve"}


@dataclass
class RawSample:
    mosaic: np.ndarray  # HxW float32 [0, 1] on the photo's grid
    top: int
    left: int
    cfa: str  # Bayer pattern at the photo's origin
    wb: np.ndarray | None = None
    cam2rgb: np.ndarray | None = None
    source: str | None = None

    def save(self, path: str | os.PathLike) -> None:
        from rawedge.io.atomic import atomic_output

        extra = {k: np.asarray(v) for k, v in (("wb", self.wb), ("cam2rgb", self.cam2rgb)) if v is not None}
        with atomic_output(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, raw=self.mosaic.astype(np.float32), top=self.top, left=self.left,
                                cfa=self.cfa, **extra)


def _parse_box(text: str | None, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    h, w = shape
    if not text:  # the central 256x256 (or smaller) square
        size = min(256, h // 2 * 2, w // 2 * 2)
        return (w - size) // 2, (h - size) // 2, size, size
    try:
        left, top, width, height = (int(v) for v in text.split(","))
    except ValueError:
        raise RawedgeError(None, f"--crop expects LEFT,TOP,WIDTH,HEIGHT, got {text!r}") from None
    if left < 0 or top < 0 or width < 8 or height < 8 or left + width > w or top + height > h:
        raise RawedgeError(None, f"--crop {text} is not inside the {w}x{h} mosaic (min 8x8)")
    return left, top, width, height


def load_raw_sample(path: str | os.PathLike, crop: str | None = None) -> RawSample:
    """A RAW sample from an ``.npz`` file, or cut from a RAW file (``crop`` = "LEFT,TOP,WIDTH,HEIGHT")."""
    path = Path(path)
    if not path.is_file():
        raise RawedgeError(path, "no such file")
    if path.suffix.lower() == ".npz":
        return _load_npz(path)
    from rawedge.io.raw import read_raw

    raw = read_raw(path)
    left, top, width, height = _parse_box(crop, raw.bayer.shape)
    mosaic = raw.normalized()[top:top + height, left:left + width]
    return RawSample(mosaic=mosaic, top=top, left=left, cfa=raw.cfa, wb=raw.wb_gains(),
                     cam2rgb=raw.profile.cam2rgb(), source=str(path))


def _load_npz(path: Path) -> RawSample:
    from rawedge.types import BAYER_PATTERNS

    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise RawedgeError(path, f"not a readable .npz ({type(exc).__name__})") from None
    missing = {"raw", "top", "left", "cfa"} - set(d)
    if missing:
        raise RawedgeError(path, f"RAW sample needs {', '.join(sorted(missing))} (see rawedge.training.finetune)")
    raw, cfa = np.asarray(d["raw"]), str(d["cfa"])
    if raw.ndim != 2 or min(raw.shape) < 8 or cfa not in BAYER_PATTERNS:
        raise RawedgeError(path, f"raw must be a 2-D mosaic of at least 8x8 and cfa one of {BAYER_PATTERNS}")
    if np.issubdtype(raw.dtype, np.integer):
        if "white_level" not in d:
            raise RawedgeError(path, "integer raw needs white_level (and black_level)")
        black = np.asarray(d.get("black_level", np.zeros(4)), np.float32).reshape(2, 2)
        top, left = int(d["top"]), int(d["left"])
        black = np.roll(black, (-(top % 2), -(left % 2)), axis=(0, 1))  # the pattern at the crop's origin
        tiled = np.tile(black, ((raw.shape[0] + 1) // 2, (raw.shape[1] + 1) // 2))[:raw.shape[0], :raw.shape[1]]
        mosaic = np.clip((raw.astype(np.float32) - tiled) / (np.float32(d["white_level"]) - tiled), 0, 1)
    else:
        mosaic = np.clip(raw.astype(np.float32), 0.0, 1.0)
    return RawSample(mosaic=mosaic, top=int(d["top"]), left=int(d["left"]), cfa=cfa,
                     wb=np.asarray(d["wb"], np.float64) if "wb" in d else None,
                     cam2rgb=np.asarray(d["cam2rgb"], np.float64) if "cam2rgb" in d else None, source=str(path))


def parse_edit(text: str):
    """An Edit from "NAME" (a fixed edit), "key=value,..." or both ("bright,ev=0.7").
    Keys: ev, wb (R:G:B scale), style, tone (srgb|filmic), curve (Bernstein coefficients a:b:...)."""
    from rawedge.losses.edit_aware import Edit, fixed_edits

    named = {e.name: e for e in fixed_edits()}
    edit = Edit(text)
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        if not sep:
            if key not in named:
                raise RawedgeError(None, f"unknown edit {key!r}; fixed edits: {', '.join(named)}")
            edit = replace(named[key], name=text)
            continue
        field_name = EDIT_KEYS.get(key.strip().lower())
        if field_name is None:
            raise RawedgeError(None, f"unknown edit key {key!r}; use ev, wb, style, tone, curve")
        try:
            if field_name == "exposure_ev":
                parsed = float(value)
            elif field_name in ("wb_scale", "tone_curve"):
                parsed = tuple(float(v) for v in value.split(":"))
                if field_name == "wb_scale" and len(parsed) != 3:
                    raise ValueError
            else:
                parsed = value.strip()
        except ValueError:
            raise RawedgeError(None, f"edit {part!r}: bad value (ev=0.5, wb=1.1:1:0.9, curve=0:0.4:1)") from None
        edit = replace(edit, **{field_name: parsed})
    return edit


def _window(top: int, left: int, h: int, w: int, size_hw: tuple[int, int], align: int, margin: int):
    """(y0, x0, y1, x1): an aligned window around the sample inside a padded image of ``size_hw``."""
    def axis(start, length, n):
        a = max(0, (start - margin) // align * align)
        b = a + -(-(start + length + margin - a) // align) * align
        return a, min(b, n)

    y0, y1 = axis(top, h, size_hw[0])
    x0, x1 = axis(left, w, size_hw[1])
    return y0, x0, y1, x1


def finetune(model, photo_srgb: np.ndarray, sample: RawSample, edit, wb=None, cam2rgb=None, exif=None,
             steps: int = 50, lr: float = 1e-4, raw_weight: float = 1.0, srgb_weight: float = 1.0,
             margin: int = 32, device: str = "cpu", log=None) -> dict:
    """Fine-tune ``model`` in place on one photo (HxWx3 float [0, 1]) and its RAW sample; returns a
    report with the sample-region losses and PSNRs before and after."""
    import torch
    import torch.nn.functional as F

    from rawedge.contract import canonical_inputs, make_thumb
    from rawedge.data.rggb import rggb_offset
    from rawedge.isp.ops import pack
    from rawedge.losses.edit_aware import render_edit
    from rawedge.training.distributed import resolve_device

    dev = resolve_device(device)
    wb = sample.wb if wb is None else wb
    cam2rgb = sample.cam2rgb if cam2rgb is None else cam2rgb
    if wb is None or cam2rgb is None:
        raise RawedgeError(sample.source, "white balance and colour matrix unknown: give them in the sample "
                                          "or with --like RAW / --camera")
    # RGGB frame: shift the photo (and the sample) so a red site is at the origin
    dy, dx = rggb_offset(sample.cfa)
    photo = photo_srgb[dy:, dx:]
    photo = photo[:photo.shape[0] // 2 * 2, :photo.shape[1] // 2 * 2]
    top, left = sample.top - dy, sample.left - dx
    mosaic = sample.mosaic[top % 2:, left % 2:]
    top, left = top + top % 2, left + left % 2
    h, w = mosaic.shape[0] // 2 * 2, mosaic.shape[1] // 2 * 2
    mosaic = mosaic[:h, :w]
    if top < 0 or left < 0 or top + h > photo.shape[0] or left + w > photo.shape[1] or h < 4 or w < 4:
        raise RawedgeError(sample.source, f"RAW sample at ({sample.left}, {sample.top}) size {w}x{h} is not "
                                          f"inside the {photo_srgb.shape[1]}x{photo_srgb.shape[0]} photo")
    align = int(getattr(model, "align", 2))
    srgb = torch.from_numpy(np.ascontiguousarray(np.moveaxis(photo, -1, 0), dtype=np.float32))[None]
    pad_h, pad_w = (-srgb.shape[2]) % align, (-srgb.shape[3]) % align
    srgb = F.pad(srgb, (0, pad_w, 0, pad_h), mode="replicate")
    y0, x0, y1, x1 = _window(top, left, h, w, srgb.shape[2:], align, max(margin, align))
    feed = {k: torch.from_numpy(v).to(dev) for k, v in canonical_inputs(cam2rgb, wb).items()}
    feed["thumb"] = torch.from_numpy(make_thumb(photo))[None].to(dev)
    feed["exif"] = torch.from_numpy((exif if exif is not None else np.full(4, np.nan)).astype(np.float32))[None].to(dev)
    feed["srgb"] = srgb[:, :, y0:y1, x0:x1].to(dev)
    target = torch.from_numpy(pack(mosaic, "RGGB"))[None].to(dev)
    py, px = (top - y0) // 2, (left - x0) // 2
    with torch.no_grad():
        target_srgb = render_edit(target, feed["wb"], feed["cam2rgb"], edit)

    def losses():
        pred = model(**feed)["raw"][:, :, py:py + h // 2, px:px + w // 2]
        rendered = render_edit(pred, feed["wb"], feed["cam2rgb"], edit)
        raw_mse, srgb_mse = F.mse_loss(pred, target), F.mse_loss(rendered, target_srgb)
        return raw_weight * raw_mse + srgb_weight * srgb_mse, raw_mse, srgb_mse

    model.to(dev).eval()  # eval mode: no training-time randomness (e.g. EXIF dropout) for one image
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for step in range(steps + 1):
        total, raw_mse, srgb_mse = losses()
        history.append({"step": step, "loss": total.item(), "raw_psnr": psnr_from_mse(raw_mse.item()),
                        "srgb_psnr": psnr_from_mse(srgb_mse.item())})
        if log:
            log(history[-1])
        if step == steps:
            break
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
    return {"edit": edit.to_dict(), "steps": steps, "lr": lr, "raw_weight": raw_weight, "srgb_weight": srgb_weight,
            "sample": {"source": sample.source, "top": sample.top, "left": sample.left, "height": h, "width": w},
            "window": [y0, x0, y1, x1], "before": history[0], "after": history[-1],
            "note": "losses and PSNRs on the sample region, the data the model was tuned on"}
