"""The calibration report: JSON (strict: no NaN/Infinity), a short rich table for the terminal, and a
PNG with the error maps of the worst held-out image (matplotlib)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from rawedge.io.atomic import atomic_output

from .gate import GateResult


def write_report(report: dict, path: str | os.PathLike) -> Path:
    from rawedge.export.metadata import json_safe

    with atomic_output(path, suffix=".json") as tmp:
        Path(tmp).write_text(json.dumps(json_safe(report), indent=1))
    return Path(path)


def write_figure(report: dict, result: GateResult, path: str | os.PathLike) -> Path | None:
    """Error maps of the held-out image INT8 changes most (block maxima, so sparse errors show) and the
    per-edit sRGB PSNR; None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worst = result.worst
    panels = [("render_reference", "FP32 reconstruction (default edit)", None)]
    panels += [(k, t, "magma") for k, t in (
        ("error_vs_reference", "|INT8 - FP32| RAW"), ("render_error", "|INT8 - FP32| after default edit"),
        ("error_truth_reference", "|FP32 - truth| RAW"), ("error_truth_int8", "|INT8 - truth| RAW"))]
    panels = [(k, t, c) for k, t, c in panels if k in worst]
    edits = result.summary.get("edits") if isinstance(result.summary.get("edits"), dict) else None
    n = len(panels) + (1 if edits else 0)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.2), squeeze=False)
    axes = axes[0]
    # one colour scale for the INT8-vs-FP32 map, one for the two maps against the truth (much larger errors)
    scales = {}
    for group in (("error_vs_reference",), ("error_truth_reference", "error_truth_int8"), ("render_error",)):
        present = [k for k in group if k in worst]
        vmax = max([float(np.percentile(worst[k], 99.9)) for k in present] + [1e-6])
        scales.update({k: vmax for k in present})
    for ax, (key, title, cmap) in zip(axes, panels):
        if cmap is None:
            ax.imshow(np.clip(worst[key], 0, 1))
        else:
            im = ax.imshow(worst[key], cmap=cmap, vmin=0.0, vmax=scales[key])
            fig.colorbar(im, ax=ax, fraction=0.04)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    if edits:
        ax = axes[-1]
        names = list(edits)
        ax.bar(range(len(names)), [edits[e]["psnr_vs_reference"] for e in names], color="tab:blue")
        ax.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
        ax.set_ylabel("sRGB PSNR INT8 vs FP32 (dB)")
        ax.set_title("after the five edits (mean)", fontsize=9)
    fig.suptitle(f"{Path(report['model']).name} {report['runtime']} INT8, held-out image it changes most: {worst['file']} "
                 f"(INT8 vs FP32 {worst['psnr_vs_reference_db']:.2f} dB, drop {worst['drop_db']:.3f} dB, "
                 f"{result.drop_kind}); {'PASS' if result.passed else 'FAIL'}", fontsize=10)
    fig.tight_layout()
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return Path(path)


def summary_table(report: dict):
    """A rich Table of the result (one row per attempt, then the final metrics)."""
    from rich.table import Table

    res = report["result"]
    s = res["summary"]
    title = (f"{Path(report['model']).name} -> {report['runtime']} INT8 ({report['method']}): "
             f"{'PASS' if report['passed'] else 'FAIL'}, drop {res['drop_db']:.3f} dB ({res['drop_kind']}) "
             f"(budget {res['max_drop_db']} dB, worst image {res.get('max_image_drop_db')} dB)")
    table = Table(title=title)
    for col in ("attempt", "layers kept", "INT8 vs FP32 dB", "drop dB", "result"):
        table.add_column(col, justify="right" if col != "result" else "left")
    for i, a in enumerate(report["attempts"], start=1):
        table.add_row(str(i), str(len(a["kept_layers"])), f"{a['psnr_vs_reference_db']:.2f}", f"{a['drop_db']:.3f}",
                      "pass" if a["passed"] else "fail")
    rows = [("max |error|", f"{s['max_abs']:.4f}"), ("mean |error|", f"{s['mean_abs']:.5f}"),
            ("99th pct |error|", f"{s['p99_abs']:.4f}")]
    if "psnr_truth_reference_db" in s:
        rows.append(("PSNR vs truth FP32 / INT8", f"{s['psnr_truth_reference_db']:.2f} / {s['psnr_truth_int8_db']:.2f}"))
    if isinstance(s.get("edits"), dict):
        worst_edit = min(s["edits"], key=lambda e: s["edits"][e]["psnr_vs_reference"])
        rows.append(("lowest edit PSNR vs FP32", f"{s['edits'][worst_edit]['psnr_vs_reference']:.2f} ({worst_edit})"))
    speed = report.get("speed") or {}
    if speed.get("measured"):
        ms = f"{speed['fp32_ms_per_mp']:.0f} / {speed['int8_ms_per_mp']:.0f} ({speed['speedup']:.2f}x)"
        rows.append(("speed FP32 / INT8 ms/MP", ms))
    size = report.get("size") or {}
    if size.get("int8_bytes"):
        rows.append(("size FP32 / INT8", f"{size['fp32_bytes'] / 1e6:.2f} / {size['int8_bytes'] / 1e6:.2f} MB"))
    extra = Table(show_header=False, box=None)
    extra.add_column()
    extra.add_column(justify="right")
    for k, v in rows:
        extra.add_row(k, v)
    return table, extra
