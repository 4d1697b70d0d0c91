"""``make interop``: the DNG corpus (interop.corpus) through Adobe's SDK (dng_validate -tif), darktable
(darktable-cli, rawspeed), RawTherapee (rawtherapee-cli) and LibRaw (rawpy). Per render: size and
orientation as the photo (DefaultScale for non-square pixels), mean R/G and B/G within 5 % of the photo's.
Writes a contact sheet (photo | Adobe | darktable | RawTherapee | LibRaw) to docs/interop.png.

Each render is "ok", "FAIL ..." or "limited: ..." (a documented limitation of the reader, checked to be
exactly that limitation, never passed silently; README "Formats"). What is compared, per reader:

- Adobe: size/orientation of the DNG's default rendering; colour on the same DNG with Adobe's default
  look switched off (ProfileToneCurve identity, BaselineExposure 0: ``write_dng(linear_tone_curve=True)``).
  The default tone curve (applied in ProPhoto RGB) boosts saturated colours: on the sample photo B/G
  is 21 % low with it, within 2 % without it, and neutral patches are exact either way (README).
  The default rendering's ratios are reported as ``default_rg_err``/``default_bg_err``.
- darktable: colour ratios; brightness against the photo mapped through darktable's own rendering of a
  grey ramp DNG (its scene-referred default adds +0.7 EV and filmic, so the raw mean is not the photo's).
- RawTherapee 5.9: renders the padded mosaic less its own 4 px border (it ignores DefaultCrop), ignores
  DefaultScale and the mirrored orientations 2, 4, 5, 7 (renders them as orientation 1): the render is
  compared with the photo under exactly those limitations, and the row says "limited".
- LibRaw: renders the DefaultCrop margin; the script crops it (in LibRaw's flipped, stretched frame).

    python -m interop.run [--install] [--out runs/interop] [--sheet docs/interop.png]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from interop.corpus import ROOT, build_corpus, find_or_build_validator, orient, validate

READERS = ("adobe", "darktable", "rawtherapee", "libraw")
# RawTherapee 5.9 renders the whole mosaic but a fixed border of this many pixels per side (measured: a
# 400x300 photo with an 8 px DefaultCrop margin, 416x316 stored, comes out 408x308, best aligned at 4, 4).
RT_BORDER = 4
# Orientations RawTherapee 5.9 applies: rotations only (its raw loader turns LibRaw/dcraw flip codes
# 3, 5, 6 into 180/270/90 degrees and every other code into 0); mirrored ones render as orientation 1.
RT_ORIENTATION = {1: 1, 2: 1, 3: 3, 4: 1, 5: 1, 6: 6, 7: 1, 8: 8}
# LibRaw's flip code for each EXIF orientation (LibRaw: "50132467"[orientation & 7]).
LIBRAW_FLIP = {1: 0, 2: 1, 3: 3, 4: 2, 5: 4, 6: 6, 7: 7, 8: 5}
# Brightness tolerance (8-bit levels, mean over the image) where brightness is checked.
BRIGHTNESS_TOL = 12.0
TOOLS = {"darktable": "darktable-cli", "rawtherapee": "rawtherapee-cli"}
PACKAGES = ["darktable", "rawtherapee", "libraw-bin", "libimage-exiftool-perl"]


def install() -> str:
    missing = [t for t in TOOLS.values() if shutil.which(t) is None]
    if not missing:
        return "darktable-cli and rawtherapee-cli already installed"
    if shutil.which("apt-get") is None:
        return f"missing {missing}; no apt-get here"
    done = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES], check=False,
                          capture_output=True, text=True, env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/bin:/bin"})
    return f"apt-get install {' '.join(PACKAGES)}: exit {done.returncode} {done.stderr.strip()[-300:]}"


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def libraw_default_crop(rgb: np.ndarray, s) -> np.ndarray:
    """LibRaw's rendering (flipped, non-square pixels stretched) less the DefaultCrop margin it renders.
    The crop rectangle is placed in the sensor frame, stretched like LibRaw stretches (width by
    pixel_aspect > 1, height by 1 / pixel_aspect < 1) and carried through the same flip as the image."""
    from interop.corpus import orient

    if not s.crop_width or not s.crop_height:
        return rgb
    aspect = float(s.pixel_aspect or 1.0)
    sx, sy = (aspect, 1.0) if aspect >= 1 else (1.0, 1.0 / aspect)
    height, width = round(s.height * sy), round(s.width * sx)
    mask = np.zeros((height, width), dtype=bool)
    mask[round(s.crop_top_margin * sy):round((s.crop_top_margin + s.crop_height) * sy),
         round(s.crop_left_margin * sx):round((s.crop_left_margin + s.crop_width) * sx)] = True
    orientation = {v: k for k, v in LIBRAW_FLIP.items()}.get(int(s.flip), 1)
    mask = orient(mask, orientation)
    if mask.shape != rgb.shape[:2]:  # not the frame expected: leave the render as it is (the check says so)
        return rgb
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return rgb[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _adobe(dng: Path, work: Path, validator, suffix: str) -> np.ndarray:
    tif = work / f"{dng.stem}.{suffix}.tif"
    code, stars, _ = validate(validator, dng, tif=tif)
    if code or stars:
        raise RuntimeError(f"dng_validate exit {code}: {stars}")
    return _read(tif)


def render(reader: str, dng: Path, work: Path, validator) -> np.ndarray:
    if reader == "adobe":
        return _adobe(dng, work, validator, "adobe")
    if reader == "libraw":
        import rawpy

        with rawpy.imread(str(dng)) as raw:
            sizes = raw.sizes  # before postprocess, which turns width/height into the stretched ones
            rgb = raw.postprocess(use_camera_wb=True, no_auto_bright=True, gamma=(2.4, 12.92))
            return libraw_default_crop(rgb, sizes)
    out = work / f"{dng.stem}.{reader}.jpg"
    out.unlink(missing_ok=True)
    if reader == "darktable":
        cfg = work / "darktable-config"
        cfg.mkdir(exist_ok=True)
        cmd = ["darktable-cli", str(dng), str(out), "--core", "--configdir", str(cfg), "--library", ":memory:",
               "--disable-opencl"]
    else:
        cmd = ["rawtherapee-cli", "-Y", "-d", "-j95", "-o", str(out), "-c", str(dng)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    if not out.is_file():
        raise RuntimeError(f"{cmd[0]} exit {done.returncode}: {(done.stderr or done.stdout).strip()[-200:]}")
    return _read(out)


def _ratios(a: np.ndarray) -> np.ndarray:
    return np.array([a[..., 0].mean() / a[..., 1].mean(), a[..., 2].mean() / a[..., 1].mean()])


def compare(image: np.ndarray, case, orientation: int | None = None, pixel_aspect: float | None = None,
            tone=None) -> dict:
    """Size/orientation and mean colour ratios of a render against the photo, shown under ``orientation``
    with ``pixel_aspect`` (the case's own unless a reader is known to differ). ``tone``: a 256-entry
    table of the reader's rendering of grey levels; with it, the mean brightness is compared with the
    photo mapped through it (``brightness_ok``)."""
    from PIL import Image

    orientation = case.orientation if orientation is None else orientation
    pixel_aspect = case.pixel_aspect if pixel_aspect is None else pixel_aspect
    expected = orient(case.photo, orientation)
    h, w = expected.shape[:2]
    aspect = pixel_aspect if orientation < 5 else 1.0 / pixel_aspect
    want = (w / h) * aspect
    got = image.shape[1] / image.shape[0]
    size_ok = abs(got / want - 1) < 0.03
    small = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BOX), dtype=np.float64)
    ref = expected.astype(np.float64)
    corr = float(np.corrcoef(small.mean(axis=2).ravel(), ref.mean(axis=2).ravel())[0, 1])
    err = _ratios(small) / _ratios(ref) - 1
    out = {"size": f"{image.shape[1]}x{image.shape[0]}", "size_ok": bool(size_ok),
           "orientation_corr": round(corr, 3), "orientation_ok": corr > 0.8, "rg_err": round(float(err[0]), 4),
           "bg_err": round(float(err[1]), 4), "colour_ok": bool(np.all(np.abs(err) < 0.05)),
           "mean": round(float(small.mean()), 1), "photo_mean": round(float(ref.mean()), 1)}
    if tone is not None:
        target = float(np.asarray(tone)[expected].mean())
        out.update(reader_mean=round(target, 1), brightness_ok=abs(float(small.mean()) - target) < BRIGHTNESS_TOL)
    return out


def rawtherapee_view(image: np.ndarray, case) -> tuple[np.ndarray, int, float, list[str]]:
    """(the render less the margin RawTherapee 5.9 renders, the orientation and pixel aspect it can be
    expected to show, the limitations that apply). The margin left is CROP_MARGIN - RT_BORDER per side."""
    from rawedge.io.dng import CROP_MARGIN

    limits = [f"renders the DefaultCrop margin ({CROP_MARGIN - RT_BORDER} px per side, cropped for the check)"]
    m = CROP_MARGIN - RT_BORDER
    if m > 0 and min(image.shape[:2]) > 2 * m:
        image = image[m:-m, m:-m]
    orientation = RT_ORIENTATION[case.orientation]
    if orientation != case.orientation:
        limits.append(f"ignores mirrored orientation {case.orientation} (shown as {orientation})")
    aspect = case.pixel_aspect
    if aspect != 1.0:
        limits.append(f"ignores DefaultScale (pixel aspect {aspect:.3f})")
        aspect = 1.0
    return np.ascontiguousarray(image), orientation, aspect, limits


def grey_ramp_tone(reader: str, work: Path, validator, size=(256, 48)) -> np.ndarray | None:
    """A reader's rendering of grey: 256-entry table (photo level -> 8-bit output level), from a DNG made
    by the same reverse ISP from a horizontal grey ramp (generic profile, the corpus's white balance)."""
    from interop.corpus import _make, _photo
    from rawedge.io.dng import write_dng
    from rawedge.types import CameraProfile

    _, exif = _photo((8, 8))
    w, h = size
    ramp = np.repeat(np.repeat(np.arange(256, dtype=np.uint8), w // 256)[None, :, None], 3, axis=2)
    ramp = np.ascontiguousarray(np.repeat(ramp, h, axis=0))
    case = _make("grey-ramp", ramp, exif, CameraProfile.generic())
    dng = work / "grey-ramp.dng"
    write_dng(dng, case.raw)
    image = render(reader, dng, work, validator).astype(np.float64)
    if image.shape[:2] != ramp.shape[:2]:
        from PIL import Image

        image = np.asarray(Image.fromarray(image.astype(np.uint8)).resize((w, h), Image.Resampling.BOX), np.float64)
    row = image[h // 4: 3 * h // 4].mean(axis=(0, 2))
    return np.maximum.accumulate(np.interp(np.arange(256), np.arange(w) * 256 / w, row))


def check(reader: str, image: np.ndarray, case, dng: Path, work: Path, validator, tones: dict) -> dict:
    """The report entry of one render: the comparisons and status ("ok", "limited: ...", "FAIL")."""
    limits: list[str] = []
    notes: list[str] = []
    if reader == "rawtherapee":
        rendered = f"{image.shape[1]}x{image.shape[0]}"
        image, orientation, aspect, limits = rawtherapee_view(image, case)
        entry = compare(image, case, orientation, aspect)
        entry["rendered_size"] = rendered
    elif reader == "darktable":
        entry = compare(image, case, tone=tones.get("darktable"))
        notes.append("colour ratios; brightness against darktable's own rendering of a grey ramp "
                     "(scene-referred default: +0.7 EV exposure, filmic)")
    elif reader == "adobe":
        entry = compare(image, case)
        from rawedge.io.dng import write_dng

        linear = work / f"{dng.stem}.linear.dng"
        write_dng(linear, case.raw, linear_tone_curve=True)
        flat = compare(_adobe(linear, work, validator, "adobe-linear"), case)
        entry.update(default_rg_err=entry["rg_err"], default_bg_err=entry["bg_err"], rg_err=flat["rg_err"],
                     bg_err=flat["bg_err"], colour_ok=flat["colour_ok"])
        notes.append("colour measured with Adobe's default tone curve off (ProfileToneCurve identity); "
                     f"with it R/G {entry['default_rg_err']:+.3f} B/G {entry['default_bg_err']:+.3f}")
    else:
        entry = compare(image, case)
    ok = entry["size_ok"] and entry["orientation_ok"] and entry["colour_ok"] and entry.get("brightness_ok", True)
    why = [k[:-3] for k in ("size_ok", "orientation_ok", "colour_ok", "brightness_ok") if entry.get(k) is False]
    entry["status"] = ("limited: " + "; ".join(limits) if limits else "ok") if ok else "FAIL " + ", ".join(why)
    if limits:
        entry["limitations"] = limits
    if notes:
        entry["notes"] = notes
    return entry


def contact_sheet(rows, path: Path, cell: int = 150) -> None:
    from PIL import Image, ImageDraw

    cols = ("photo",) + READERS
    sheet = Image.new("RGB", (140 + cell * len(cols), 20 + cell * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, name in enumerate(cols):
        draw.text((140 + j * cell + 4, 4), name, fill="black")
    for i, (name, images) in enumerate(rows):
        draw.text((4, 20 + i * cell + cell // 2), name[:22], fill="black")
        for j, image in enumerate(images):
            if image is None:
                continue
            im = Image.fromarray(image)
            im.thumbnail((cell - 6, cell - 6))
            sheet.paste(im, (140 + j * cell + 3, 20 + i * cell + 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(colors=256, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)  # ~1 MB, not 3.5


def main(argv=None) -> int:
    from rawedge.io.dng import write_dng

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--install", action="store_true", help="apt-get install darktable and rawtherapee if missing")
    ap.add_argument("--out", default="runs/interop")
    ap.add_argument("--sheet", default=str(ROOT / "docs" / "interop.png"))
    ap.add_argument("--size", default="400x300", help="photo size WxH for the corpus")
    args = ap.parse_args(argv)
    if args.install:
        print(install(), flush=True)
    validator, why = find_or_build_validator()
    if validator is None:
        print(f"dng_validate unavailable: {why}", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = tuple(int(v) for v in args.size.split("x"))
    rows, report, failures = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tones = {}
        if shutil.which(TOOLS["darktable"]):
            try:
                tones["darktable"] = grey_ramp_tone("darktable", work, validator)
                print("darktable grey ramp: photo level 0/64/128/192/255 -> "
                      + "/".join(f"{tones['darktable'][v]:.0f}" for v in (0, 64, 128, 192, 255)), flush=True)
            except Exception as exc:  # noqa: BLE001  without it darktable's brightness is a failure, said so
                print(f"darktable grey ramp failed: {exc}", file=sys.stderr)
        for i, case in enumerate(build_corpus(size)):
            dng = out / f"{case.name}.dng"
            write_dng(dng, case.raw, preview=case.photo if i % 2 else None)
            images = [orient(case.photo, case.orientation)]
            for reader in READERS:
                entry = {"case": case.name, "reader": reader}
                if reader in TOOLS and shutil.which(TOOLS[reader]) is None or reader == "adobe" and validator is None:
                    entry["status"] = "not installed"
                    images.append(None)
                else:
                    try:
                        image = render(reader, dng, work, validator)
                        entry.update(check(reader, image, case, dng, work, validator, tones))
                        if reader == "darktable" and "darktable" not in tones:
                            entry["status"] = "FAIL no grey-ramp rendering to check brightness against"
                        images.append(image)
                    except Exception as exc:  # noqa: BLE001  a reader's failure is a row of the report
                        entry["status"] = f"FAIL {exc}"
                        images.append(None)
                failures += entry["status"].startswith("FAIL")
                report.append(entry)
                short = "limited (" + ", ".join(lim.split(" (")[0] for lim in entry["limitations"]) + ")" \
                    if entry["status"].startswith("limited") else entry["status"][:60]
                print(f"{case.name:40s} {reader:12s} {entry.get('rendered_size', entry.get('size', '')):>9s} "
                      f"R/G {entry.get('rg_err', float('nan')):+.3f} B/G {entry.get('bg_err', float('nan')):+.3f} "
                      f"mean {entry.get('mean', float('nan')):5.1f} (photo {entry.get('photo_mean', float('nan')):5.1f}"
                      + (f", reader's grey {entry['reader_mean']:5.1f}" if "reader_mean" in entry else "")
                      + f")  {short}", flush=True)
            rows.append((case.name, images))
    contact_sheet(rows, Path(args.sheet))
    versions = {}
    for tool, flag in (("darktable-cli", "--version"), ("rawtherapee-cli", "-v")):
        if shutil.which(tool):
            v = subprocess.run([tool, flag], check=False, capture_output=True, text=True, timeout=60)
            versions[tool] = (v.stdout or v.stderr).strip().splitlines()[0] if (v.stdout or v.stderr).strip() else "?"
    versions["dng_validate"] = "Adobe DNG SDK 1.7.1" if validator else "not available"
    import rawpy

    versions["libraw"] = f"LibRaw {rawpy.libraw_version} (rawpy {rawpy.__version__})"
    summary = {reader: {k: sum(1 for r in report if r["reader"] == reader and r["status"].startswith(k))
                        for k in ("ok", "limited", "FAIL", "not installed")} for reader in READERS}
    (out / "report.json").write_text(json.dumps({"versions": versions, "summary": summary, "renders": report},
                                                indent=1, default=float))
    for reader, counts in summary.items():
        print(f"{reader:12s} " + " ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"versions: {versions}\ncontact sheet: {args.sheet}; report: {out / 'report.json'}; {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
