"""``make interop``: the DNG corpus (interop.corpus) through Adobe's SDK (dng_validate -tif), darktable
(darktable-cli, rawspeed), RawTherapee (rawtherapee-cli) and LibRaw (rawpy). Per render: size and
orientation as the photo (DefaultScale for non-square pixels), mean R/G and B/G within 5 % of the photo's.
Writes a contact sheet (photo | Adobe | darktable | RawTherapee | LibRaw) to docs/interop.png.

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


def render(reader: str, dng: Path, work: Path, validator) -> np.ndarray:
    if reader == "adobe":
        code, stars, _ = validate(validator, dng, tif=work / (dng.stem + ".adobe.tif"))
        if code or stars:
            raise RuntimeError(f"dng_validate exit {code}: {stars}")
        return _read(work / (dng.stem + ".adobe.tif"))
    if reader == "libraw":
        import rawpy

        with rawpy.imread(str(dng)) as raw:
            rgb = raw.postprocess(use_camera_wb=True, no_auto_bright=True, gamma=(2.4, 12.92))
            s = raw.sizes
            if s.crop_width and s.pixel_aspect == 1.0:  # LibRaw renders the DefaultCrop margin
                flip = s.flip
                top, left = s.crop_top_margin, s.crop_left_margin
                if flip in (5, 6):
                    top, left = left, top
                h, w = (s.crop_width, s.crop_height) if flip in (5, 6) else (s.crop_height, s.crop_width)
                rgb = rgb[top:top + h, left:left + w]
        return rgb
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


def compare(image: np.ndarray, case) -> dict:
    """Size/orientation and mean colour ratios of a render against the photo."""
    from PIL import Image

    expected = orient(case.photo, case.orientation)
    h, w = expected.shape[:2]
    aspect = case.pixel_aspect if case.orientation < 5 else 1.0 / case.pixel_aspect
    want = (w / h) * aspect
    got = image.shape[1] / image.shape[0]
    size_ok = abs(got / want - 1) < 0.03
    small = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BOX), dtype=np.float64)
    ref = expected.astype(np.float64)
    corr = float(np.corrcoef(small.mean(axis=2).ravel(), ref.mean(axis=2).ravel())[0, 1])
    def ratios(a):
        return np.array([a[..., 0].mean() / a[..., 1].mean(), a[..., 2].mean() / a[..., 1].mean()])

    err = ratios(small) / ratios(ref) - 1
    return {"size": f"{image.shape[1]}x{image.shape[0]}", "size_ok": bool(size_ok), "orientation_corr": round(corr, 3),
            "orientation_ok": corr > 0.8, "rg_err": round(float(err[0]), 4), "bg_err": round(float(err[1]), 4),
            "colour_ok": bool(np.all(np.abs(err) < 0.05)), "mean": round(float(small.mean()), 1),
            "photo_mean": round(float(ref.mean()), 1)}


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
    sheet.save(path)


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
                        entry.update(compare(image, case))
                        ok = entry["size_ok"] and entry["orientation_ok"] and entry["colour_ok"]
                        entry["status"] = "ok" if ok else "FAIL"
                        images.append(image)
                    except Exception as exc:  # noqa: BLE001  a reader's failure is a row of the report
                        entry["status"] = f"FAIL {exc}"
                        images.append(None)
                failures += entry["status"] != "ok" and entry["status"] != "not installed"
                report.append(entry)
                print(f"{case.name:40s} {reader:12s} {entry['status'][:60]:8s} {entry.get('size', ''):>9s} "
                      f"R/G {entry.get('rg_err', float('nan')):+.3f} B/G {entry.get('bg_err', float('nan')):+.3f} "
                      f"mean {entry.get('mean', float('nan')):5.1f} (photo {entry.get('photo_mean', float('nan')):5.1f})",
                      flush=True)
            rows.append((case.name, images))
    contact_sheet(rows, Path(args.sheet))
    versions = {}
    for tool, flag in (("darktable-cli", "--version"), ("rawtherapee-cli", "-v")):
        if shutil.which(tool):
            v = subprocess.run([tool, flag], check=False, capture_output=True, text=True, timeout=60)
            versions[tool] = (v.stdout or v.stderr).strip().splitlines()[0] if (v.stdout or v.stderr).strip() else "?"
    (out / "report.json").write_text(json.dumps({"versions": versions, "renders": report}, indent=1))
    print(f"versions: {versions}\ncontact sheet: {args.sheet}; report: {out / 'report.json'}; {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
