"""Leave one camera family out: the measurement of issue 13, reproduced by one command.

    python benchmarks/lofo.py --work runs/lofo                 # pool, eval set, three folds, table
    python benchmarks/lofo.py --work runs/lofo --steps 3000    # longer folds (GPU)
    python benchmarks/lofo.py --work runs/lofo --table-only    # rebuild the table from the fold reports
    python benchmarks/lofo.py --families gopro kodak --threads 1 &      # two processes share 2 cores
    python benchmarks/lofo.py --families canon_powershot --all --threads 1

Three families in ../shared: Canon PowerShot (G2, S40), Kodak (DC120, DC50), GoPro (HERO6, HERO7,
FUSION). For each, a model is trained on the pool (rawedge.data.mix) without that family: none of its
RAW files and, for cross-camera and synthetic pairs, none of its cameras' matrices (rawedge.data.mix.
fold_manifest). It is then scored with ``rawedge.training.evaluate`` (the same code as ``rawedge eval``) on that
family's held-out renderings: LibRaw's default rendering, a random LibRaw rendering, a random camera-engine
rendering and, for the Canon family, the camera's own JPEG. The analytic inverse is scored on the same
images with the same white balance and matrix (those of the RAW file: ``--like RAW``).

Every stage resumes: data folders that exist are reused, training continues from ``last.pt``,
finished fold reports are kept. Output: ``WORK/table.md`` and ``WORK/lofo.json``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import NamedTuple

import yaml

from rawedge.training.blend import FLOOR_DB as BAR_FLOOR_DB  # issue 13's tolerance

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RAW_DIRS = [SHARED / "raw", SHARED / "raw-gopro"]
PHOTOS = SHARED / "photos" / "kodak"
RECIPE = ROOT / "recipes" / "lofo.yaml"
EVAL_CROP = 1024  # central square scored per image (the FUSION circle contains it)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_data(work: Path, options=None) -> None:
    from rawedge.data.mix import build_eval_set, build_pool

    if not (work / "pool" / "manifest.json").is_file():
        log(f"building the training pool ({options or 'default mix'})")
        m = build_pool(RAW_DIRS, PHOTOS, work / "pool", options, on_step=lambda s: log(f"  pool: {s}"))
        log(f"pool: {len(m.samples)} pairs")
    if not (work / "eval" / "manifest.json").is_file():
        log("building the held-out renderings")
        m = build_eval_set(RAW_DIRS, work / "eval", on_step=lambda s: log(f"  eval: {s}"))
        log(f"eval: {len(m.samples)} pairs")


def train_fold(work: Path, held_out: str | None, steps: int | None, recipe_path: Path,
               threads: int | None = None, seed: int | None = None, metering: float | str | None = None) -> Path:
    """Train on the pool without the ``held_out`` family (None: on everything) and return the checkpoint.
    ``metering``: the model's metering weight while training (a number, or ``"fit"`` on the fold's own
    training pairs); None: the recipe's."""
    from rawedge.data.mix import fold_manifest
    from rawedge.training.recipe import Recipe
    from rawedge.training.trainer import train

    name = f"fold-{held_out}" if held_out else "all"
    data = work / name / "data"
    if held_out:
        if not (data / "manifest.json").is_file():
            fold_manifest(work / "pool", held_out, data)
    else:
        data = work / "pool"
    run = work / name / "run"
    final = run / "final.pt"
    if final.is_file():
        return final
    d = yaml.safe_load(recipe_path.read_text())
    d["data"]["dir"] = str(data)
    d["train"]["out"] = str(run)
    if steps:
        d["train"]["max_steps"] = steps
    if threads:
        d["train"]["threads"] = threads
    if metering is not None:
        run.mkdir(parents=True, exist_ok=True)
        options = Fix(metering=metering).options(work, held_out)
        d["model"].setdefault("config", {})["metering_weight"] = options.get("metering_weight", 0.0)
    if seed is not None:  # initialisation, crops and the edit-aware loss's random edits
        d["train"]["seed"] = seed
        d["loss"].setdefault("config", {})["seed"] = seed
    recipe = Recipe.from_dict(d, recipe_path)
    resume = run / "last.pt" if (run / "last.pt").is_file() else None
    log(f"training {name} ({recipe.train.max_steps} steps){' (resuming)' if resume else ''}")
    result = train(recipe, resume=resume, show_progress=False)
    shutil.copyfile(result.last, final)  # marks the fold as trained; last.pt stays for inspection
    log(f"trained {name}: {result.steps} steps")
    return final


def family_eval(work: Path, family: str) -> Path:
    """The held-out renderings of one family (a linked subset of WORK/eval)."""
    from rawedge.data.mix import subset_manifest

    data = work / f"fold-{family}" / "eval"
    if not (data / "manifest.json").is_file():
        subset_manifest(work / "eval", lambda s: s.settings.get("source_family") == family, data)
    return data


class Fix(NamedTuple):
    """Options held fixed, not chosen, for every fold's model (rawedge.training.blend): the exposure blend
    ``eta`` and the metering weight, a number or ``"fit"`` (fitted on that fold's own training pairs,
    rawedge.training.metering; cached as RUN/metering.json), and with ``gate`` the highlight gate's knee,
    fitted with it (RUN/metering-gate.json)."""

    eta: float = 1.0
    metering: float | str = 0.0
    gate: bool = False

    def options(self, work: Path, held_out: str | None) -> dict:
        """The options of fold ``held_out`` (None: the model trained on every family), as set on the model."""
        out = {}
        if self.eta != 1.0:
            out["exposure_blend"] = float(self.eta)
        kappa, knee = self.metering, None
        if kappa == "fit":
            name = f"fold-{held_out}" if held_out else "all"
            evidence = _metering_fit(work, name, work / name / "data" if held_out else work / "pool", self.gate)
            kappa, knee = evidence["kappa"], evidence.get("knee")
        if float(kappa):
            out["metering_weight"] = float(kappa)
            if knee is not None:
                out["metering_knee"] = float(knee)
        return out


def _metering_fit(work: Path, name: str, data: Path, gate: bool) -> dict:
    """The metering fit of ``name`` (rawedge.training.metering) on ``data``, cached in its run folder."""
    from rawedge.training.metering import fit_metering_weight

    cache = work / name / "run" / ("metering-gate.json" if gate else "metering.json")
    if not cache.is_file():
        log(f"fitting the metering weight{' and highlight knee' if gate else ''} of {name} on its training pairs")
        _, evidence = fit_metering_weight(data, gate=gate)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(evidence, indent=1))
    return json.loads(cache.read_text())


NO_FIX = Fix()


def _fix_suffix(options: dict) -> str:
    return ((f"-eta{options['exposure_blend']:.2f}" if "exposure_blend" in options else "")
            + (f"-m{options['metering_weight']:.2f}" if "metering_weight" in options else "")
            + (f"-k{options['metering_knee']:.2f}" if "metering_knee" in options else ""))


def _fix_label(fix: Fix) -> str:
    """Report-name suffix of the fixed options (the metering weight by how it was set: ``fit`` or a number)."""
    return ((f"-eta{fix.eta:.2f}" if fix.eta != 1.0 else "")
            + ("-mfit" if fix.metering == "fit" else f"-m{float(fix.metering):.2f}" if float(fix.metering) else "")
            + ("-gate" if fix.gate else ""))


def sweep_cache(run: Path, family: str, tone: float = 1.0, options: dict | None = None) -> Path:
    """Where a fold's sweep on ``family`` at tone blend ``tone`` and the fixed ``options`` is cached (beside
    its checkpoint)."""
    return run / (f"sweep-{family}" + (f"-tone{tone:.2f}" if tone != 1.0 else "") + _fix_suffix(options or {})
                  + ".json")


def sweep_rows(work: Path, checkpoint: Path, family: str, tone: float = 1.0, fix: Fix = NO_FIX) -> list[dict]:
    """rawedge.training.blend.sweep of ``checkpoint`` (fold ``family``'s) on ``family``'s renderings at tone
    blend ``tone`` and the fixed options ``fix``, cached beside it."""
    from rawedge.training.blend import sweep

    options = fix.options(work, family)
    out = sweep_cache(checkpoint.parent, family, tone, options)
    if out.is_file():
        return json.loads(out.read_text())
    log(f"sweeping the prior blend of {checkpoint.parent.parent.name} on {family} at tone blend {tone} {options}")
    rows = sweep(checkpoint, family_eval(work, family), center_crop=EVAL_CROP, tone=tone, fixed=options)
    out.write_text(json.dumps(rows))
    return rows


def hedge_rows(work: Path, family: str, tones, fix: Fix = NO_FIX) -> tuple[list[dict], list]:
    """Fold ``family``'s sweeps on its own held-out renderings over the (tone blend, lambda) grid
    (rawedge.training.blend.hedge_grid), at the fixed options ``fix``; with one tone blend of 1, the plain
    lambda grid."""
    from rawedge.training.blend import GRID, hedge_grid

    final = work / f"fold-{family}" / "run" / "final.pt"
    if tuple(tones) == (1.0,):
        return sweep_rows(work, final, family, fix=fix), list(GRID)
    return hedge_grid({mu: sweep_rows(work, final, family, mu, fix) for mu in tones})


def _label(point) -> str:
    return f"mu {point[0]:.2f} lambda {point[1]:.1f}" if isinstance(point, tuple) else f"{point:.1f}"


def sweep_table(work: Path, families, tones=(1.0,), fix: Fix = NO_FIX) -> str:
    """The hedges swept on each trained fold's own held-out family (rawedge.training.blend): gain over the
    analytic inverse per camera at each lambda, one block of columns per tone blend. Chosen with hindsight
    on the images it is reported on, so it bounds what any fixed hedge could do; it is not a result."""
    from rawedge.training.blend import GRID, choose

    tones = sorted(tones, reverse=True)
    cols = [(mu, lam) for mu in tones for lam in GRID]
    lines = ["| held out | camera | " + " | ".join(f"{mu:.2f}/{lam:.1f}" if len(tones) > 1 else f"{lam:.1f}"
                                                  for mu, lam in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    if len(tones) > 1:
        lines.insert(0, "Columns: tone blend mu / prior blend lambda.\n")
    for family in families:
        final = work / f"fold-{family}" / "run" / "final.pt"
        if not final.is_file():
            continue
        rows, grid = hedge_rows(work, family, tones, fix)
        best, evidence = choose(rows, grid)
        per_mu = {mu: choose(sweep_rows(work, final, family, mu, fix))[1] for mu in tones}
        for cam in evidence["cameras"]:
            for key in ("raw", "srgb"):
                lines.append(f"| {family} | {cam} {key} | " + " | ".join(
                    f"{g:+.2f}" for mu in tones for g in per_mu[mu]["cameras"][cam][key]) + " |")
        lines.append(f"| {family} | worst camera | " + " | ".join(
            f"{g:+.2f}" for mu in tones for g in per_mu[mu]["worst_camera_gain_db"])
                     + f" |  (best in hindsight: {_label(best)})")
    return "\n".join(lines) + "\n"


def hedge_fold(work: Path, family: str | None, families, tones=(1.0,), fix: Fix = NO_FIX) -> tuple[Path, object]:
    """Fold ``family``'s checkpoint hedged toward the analytic inverse (rawedge.training.blend), with the
    hedge chosen across folds: from the other folds' sweeps (each the other fold's model on the family it did
    not see), never from ``family``'s own images; the largest mean gain whose worst camera stays within the
    bar's tolerance there. ``tones``: the tone blends swept (one of 1: lambda only). ``family`` None: the
    model trained on every family (the candidate default), hedge chosen from all the folds' sweeps together.
    ``fix``: the options held fixed (not chosen), swept at and written into the hedged checkpoint."""
    from rawedge.training.blend import choose, with_blend

    chosen_on = [f for f in families if f != family]
    rows, grid = [], None
    for other in chosen_on:
        other_rows, grid = hedge_rows(work, other, tones, fix)
        rows += other_rows
    point, evidence = choose(rows, grid, floor=BAR_FLOOR_DB)
    mu, lam = point if isinstance(point, tuple) else (1.0, point)
    run = work / (f"fold-{family}" if family else "all") / "run"
    options = fix.options(work, family)
    out = run / ("hedged" + (f"-tone{mu:.2f}" if mu != 1.0 else "") + _fix_suffix(options) + f"-{lam:.1f}.pt")
    if not out.is_file():
        with_blend(run / "final.pt", lam, out, {**evidence, "chosen_on": chosen_on}, tone=mu, fixed=options)
    log(f"{f'fold {family}' if family else 'every family'}: {_label(point)} from the folds {chosen_on} "
        f"(worst camera there {evidence['worst_camera_gain_db'][grid.index(point)]:+.2f} dB)")
    return out, point


def rule_outcome(work: Path, families, tones=(1.0,), fix: Fix = NO_FIX) -> str:
    """What ``--hedge`` would score, computed from the folds' sweeps alone (RAW and default-edit sRGB PSNR
    gains; no exposure error): each family at the hedge the other folds' sweeps choose (hedge_fold's rule).
    The sweeps score the same images with the same code, so this equals the hedged reports' gains (checked
    on the fifth round's seeds 0 and 1) at a fraction of the cost."""
    from rawedge.training.blend import baseline, camera_gains, choose

    rows = {f: hedge_rows(work, f, tones, fix) for f in families}
    lines = ["| held out | hedge (chosen on the other folds) | RAW gain | sRGB gain | per camera RAW / sRGB |",
             "|---|---|---|---|---|"]
    raw, srgb, worst = [], [], []
    for family in families:
        grid = rows[family][1]
        point, _ = choose([r for other in families if other != family for r in rows[other][0]], grid,
                          floor=BAR_FLOOR_DB)
        k = grid.index(point)
        own = rows[family][0]
        raw.append(sum(r["raw"][k] - baseline(r, "raw") for r in own) / len(own))
        srgb.append(sum(r["srgb"][k] - baseline(r, "srgb") for r in own) / len(own))
        cams = camera_gains(own)
        worst += [(min(g["raw"][k], g["srgb"][k]), cam) for cam, g in cams.items()]
        lines.append(f"| {family} | {_label(point)} | {raw[-1]:+.2f} | {srgb[-1]:+.2f} | "
                     + ", ".join(f"{cam} {g['raw'][k]:+.2f} / {g['srgb'][k]:+.2f}" for cam, g in cams.items()) + " |")
    low, cam = min(worst)
    return ("\n".join(lines) + f"\n\nMean over held-out families: RAW {sum(raw) / len(raw):+.2f} dB, sRGB "
            f"{sum(srgb) / len(srgb):+.2f} dB; worst camera {cam} {low:+.2f} dB (the lower of its two gains).\n")


def write_metered_inverse(work: Path, out: Path, gate: bool = False) -> None:
    """The analytic inverse with its metering weight (and with ``gate`` its highlight knee) fitted on the
    whole pool, as a checkpoint."""
    from rawedge.models.checkpoint import save_checkpoint
    from rawedge.models.registry import create_model
    from rawedge.training.metering import fit_metering_weight

    kappa, evidence = fit_metering_weight(work / "pool", gate=gate)
    knee = evidence.get("knee")
    save_checkpoint(out, create_model("analytic", metering_weight=round(kappa, 4), metering_knee=knee),
                    recipe={"name": "metered-analytic" + ("-gated" if gate else ""),
                            "notes": "analytic inverse + ISO 12232 metering" + (", highlight-gated" if gate else "")
                                     + ", fitted by rawedge.training.metering on " + str(work / "pool")},
                    extra={"metering": evidence})
    log(f"wrote {out}: metering weight {kappa:.4f}" + (f", knee {knee:.2f}" if gate else "")
        + f" from {evidence['pairs']} pairs of {len(evidence['cameras'])} cameras "
        f"(median exposure error {evidence['median_abs_stops']})")


def score_fold(work: Path, family: str, checkpoint: Path, report_name: str = "report.json") -> dict:
    from rawedge.training.evaluate import evaluate, write_report

    out = work / f"fold-{family}" / report_name
    if out.is_file():
        return json.loads(out.read_text())
    log(f"scoring fold {family}")
    report, _ = evaluate(str(checkpoint), family_eval(work, family), split="val", center_crop=EVAL_CROP)
    write_report(report, out)
    return report


def _row(label: str, group: dict) -> str:
    m, a = group["model"], group["analytic"]

    def cell(key, get):
        x, y = get(m), get(a)
        return f"{x:.2f} / {y:.2f} ({x - y:+.2f})" if key != "exp" else f"{x:.2f} / {y:.2f}"

    return " | ".join([label, str(m["n"]),
                       cell("raw", lambda s: s["raw"]["psnr"]),
                       cell("si", lambda s: s["raw"]["si_psnr"]),
                       cell("srgb", lambda s: s["srgb"]["default"]["psnr"]),
                       cell("de", lambda s: s["srgb"]["default"]["delta_e2000"]),
                       cell("exp", lambda s: s["raw"]["exposure_abs_median_stops"])])


def table(work: Path, reports: dict[str, dict]) -> str:
    head = ("| held out | images | RAW PSNR model / analytic (gain) | scale-inv. RAW PSNR | edited sRGB PSNR "
            "(default edit) | ΔE2000 | median abs. exposure error (stops) |\n|---|---|---|---|---|---|---|")
    lines = [head]
    gains_raw, gains_srgb, worst = [], [], []
    for family, report in reports.items():
        s = report["summary"]
        lines.append("| " + _row(f"**{family} (all)**", s) + " |")
        gains_raw.append(s["model"]["raw"]["psnr"] - s["analytic"]["raw"]["psnr"])
        gains_srgb.append(s["model"]["srgb"]["default"]["psnr"] - s["analytic"]["srgb"]["default"]["psnr"])
        for cam, g in report["by_camera"].items():
            lines.append("| " + _row(f"{family}: {cam}", g) + " |")
            worst.append((g["model"]["raw"]["psnr"] - g["analytic"]["raw"]["psnr"],
                          g["model"]["srgb"]["default"]["psnr"] - g["analytic"]["srgb"]["default"]["psnr"], cam))
        for kind, g in report["by_kind"].items():
            lines.append("| " + _row(f"{family}: {kind}", g) + " |")
    n = max(1, len(gains_raw))
    stops = {who: [abs(im[who]["raw"]["exposure_stops"]) for r in reports.values() for im in r["images"]]
             for who in ("model", "analytic")}
    median = {who: sorted(v)[len(v) // 2] if v else float("nan") for who, v in stops.items()}
    summary = (f"\nMean over held-out families: RAW PSNR {sum(gains_raw) / n:+.2f} dB, edited sRGB PSNR "
               f"{sum(gains_srgb) / n:+.2f} dB against the analytic inverse. Worst held-out cameras: "
               + ", ".join(f"{cam} RAW {r:+.2f} / sRGB {s:+.2f} dB"
                         for r, s, cam in sorted(worst, key=lambda w: min(w[0], w[1]))[:2])
               + f" (the lower of the two gains first). Median absolute exposure error over all held-out images: {median['model']:.2f} stops "
               f"(analytic inverse {median['analytic']:.2f}).")
    return "\n".join(lines) + "\n" + summary + "\n" + _calibration(reports)


def _calibration(reports: dict[str, dict]) -> str:
    """The confidence calibration table: observed RMS error by decile of predicted sigma, per fold."""
    folds = {f: r["confidence"]["deciles"] for f, r in reports.items() if r.get("confidence")}
    if not folds:
        return ""
    head = "| decile | " + " | ".join(f"{f}: sigma -> RMS error" for f in folds) + " |"
    lines = [("\nConfidence calibration on the held-out families (mean predicted sigma -> observed RMS error, "
             "normalised RAW units, by decile of sigma):\n"), head, "|---|" + "---|" * len(folds)]
    for b in range(10):
        cells = [f"{d[b]['sigma']:.4f} -> {d[b]['rms_error']:.4f}" if b < len(d) else "" for d in folds.values()]
        lines.append(f"| {b + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _kappa(text: str) -> float | str:
    """A metering weight on the command line: ``fit`` or a number in [0, 1]."""
    if text == "fit":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'fit' or a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected 'fit' or a number in [0, 1], got {text!r}")
    return value


def main() -> None:
    from rawedge.data.mix import FAMILIES

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="runs/lofo", type=Path)
    parser.add_argument("--steps", type=int, help="training steps per fold (default: the recipe's)")
    parser.add_argument("--recipe", default=RECIPE, type=Path)
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--seed", type=int, help="training seed (default: the recipe's); with the same pool and "
                                                 "held-out renderings (link WORK/pool and --eval-from) it measures "
                                                 "how much the result owes to one seed")
    parser.add_argument("--threads", type=int, help="torch threads per training (two processes with 1 each "
                                                       "can train two folds at once on 2 cores)")
    parser.add_argument("--plain-fraction", type=float, default=0.5,
                        help="share of plain-like engine looks in the pool (rawedge.data.mix.MixOptions)")
    parser.add_argument("--libraw", type=int, default=2, help="LibRaw renderings per RAW file in the pool "
                                                               "(the first round used 1 and --plain-fraction 0)")
    parser.add_argument("--libraw-default", type=int, default=0,
                        help="LibRaw default renderings per RAW file in the pool (MixOptions.libraw_default)")
    parser.add_argument("--overexposed", type=int, default=0,
                        help="engine renderings of the mosaic pushed 0.5-1.5 stops brighter (MixOptions.overexposed)")
    parser.add_argument("--crosscam-p99", type=lambda t: tuple(float(x) for x in t.split(",")),
                        help="LOW,HIGH: re-expose cross-camera pairs so the brightest 1 %% lands in this range of "
                             "white (MixOptions.crosscam_p99); default: camera A's exposure")
    parser.add_argument("--eval-from", type=Path,
                        help="reuse another work folder's held-out renderings (same images for both runs)")
    parser.add_argument("--sweep", action="store_true",
                        help="only sweep the prior blend of the trained folds on their held-out families "
                             "(rawedge.training.blend) and write WORK/sweep.md")
    parser.add_argument("--rule", action="store_true",
                        help="only compute, from the folds' sweeps, the gains --hedge would score (WORK/rule.md)")
    parser.add_argument("--hedge", action="store_true",
                        help="score each trained fold hedged toward the analytic inverse, lambda chosen from the "
                             "other folds' sweeps (hedge_fold); reports report-hedged.json, table-hedged.md")
    parser.add_argument("--tones", default="1.0",
                        help="tone blends swept for the hedge, comma-separated (rawedge.models.unet tone_blend), e.g. "
                             "1.0,0.75,0.5,0.0; default 1.0: lambda only (the sixth round found that choosing mu across "
                             "folds makes things worse, docs/lofo-round6-tone.md)")
    parser.add_argument("--exposure-blend", type=float, default=1.0,
                        help="exposure blend eta of every hedged model (rawedge.models.unet exposure_blend), fixed, not "
                             "chosen: 0 keeps the analytic inverse's mean level and the learned curve "
                             "(docs/lofo-round7-exposure.md); default 1, the model's own exposure")
    parser.add_argument("--metering-weight", default=0.0, type=_kappa,
                        help="metering weight kappa of every hedged model (rawedge.models.unet metering_weight), fixed, "
                             "not chosen: a number in [0, 1], or 'fit' to fit each fold's on its own training pairs "
                             "(rawedge.training.metering); default 0, the analytic prior's exposure")
    parser.add_argument("--train-metering", type=_kappa,
                        help="train the folds on the metered prior: metering weight a number in [0, 1], or 'fit' to "
                             "fit each fold's on its own training pairs (rawedge.training.metering); default: the "
                             "recipe's")
    parser.add_argument("--highlight-gate", action="store_true",
                        help="with --metering-weight fit (or --metered-inverse): also fit the highlight gate's knee, so "
                             "the metering weight applies only as far as each JPEG's highlights reach toward white "
                             "(rawedge.models.base.highlight_gate; docs/lofo-round8-highlights.md)")
    parser.add_argument("--metered-inverse", type=Path, metavar="OUT.pt",
                        help="only write the metered analytic inverse: an 'analytic' checkpoint whose metering weight is "
                             "fitted on every family's training pairs (WORK/pool; rawedge.training.metering), for "
                             "`rawedge export` (docs/lofo-round7-exposure.md, section 6)")
    parser.add_argument("--all", action="store_true",
                        help="also train on every family (the candidate default model) into WORK/all/run/final.pt; with --hedge, "
                             "also hedge it with the lambda all the folds' sweeps choose (WORK/all/run/hedged-L.pt)")
    args = parser.parse_args()
    tones = tuple(float(t) for t in args.tones.split(","))
    train_metering = args.train_metering
    if args.highlight_gate and args.metering_weight != "fit" and not args.metered_inverse:
        parser.error("--highlight-gate needs --metering-weight fit or --metered-inverse (the knee is fitted with kappa)")
    fix = Fix(args.exposure_blend, args.metering_weight, args.highlight_gate)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    reports = {}
    if not args.table_only:
        from rawedge.data.mix import MixOptions

        if args.eval_from and not (work / "eval").exists():
            (work / "eval").symlink_to((args.eval_from / "eval").resolve())
        build_data(work, MixOptions(libraw=args.libraw, plain_fraction=args.plain_fraction,
                                    libraw_default=args.libraw_default, overexposed=args.overexposed,
                                    crosscam_p99=args.crosscam_p99))
    if args.metered_inverse:
        write_metered_inverse(work, args.metered_inverse, args.highlight_gate)
        return
    if args.sweep:
        text = sweep_table(work, args.families, tones, fix)
        (work / "sweep.md").write_text(text)
        print(text)
        return
    if args.rule:
        text = rule_outcome(work, args.families, tones, fix)
        (work / "rule.md").write_text(text)
        print(text)
        return
    suffix = (("-hedged" if tones == (1.0,) else "-hedged-tone")
              + _fix_label(fix)) if args.hedge else ""
    report_name = f"report{suffix}.json"
    for family in args.families:
        if args.table_only:
            path = work / f"fold-{family}" / report_name
            if path.is_file():
                reports[family] = json.loads(path.read_text())
            continue
        checkpoint = train_fold(work, family, args.steps, args.recipe, args.threads, args.seed, train_metering)
        if args.hedge:
            checkpoint, _ = hedge_fold(work, family, args.families, tones, fix)
        reports[family] = score_fold(work, family, checkpoint, report_name)
    if args.all and not args.table_only:
        log(f"candidate default trained on every family: {train_fold(work, None, args.steps, args.recipe, args.threads, args.seed, train_metering)}")
        if args.hedge:
            log(f"candidate default hedged: {hedge_fold(work, None, args.families, tones, fix)[0]}")
    if not reports:
        return
    text = table(work, reports)
    (work / f"table{suffix}.md").write_text(text)
    (work / f"lofo{suffix}.json").write_text(json.dumps({f: {"summary": r["summary"], "by_camera": r["by_camera"],
                                                    "by_kind": r["by_kind"], "confidence": r.get("confidence")}
                                                for f, r in reports.items()}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
