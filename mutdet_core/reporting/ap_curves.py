"""AP per fine-tuning epoch: one curve per initialisation (mean over seeds, band = min..max), one panel
per data fraction (rule ``ap_curves``; ``finetune.eval_points`` sets how many epochs each run is evaluated at).

It answers what a final number cannot: whether a pre-trained start is ahead early and the others catch up,
or whether every initialisation learns at the same pace (the pre-training then carried nothing over).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on cluster nodes
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ..tables.render import method_label  # noqa: E402
from ..tables.results import read_summary  # noqa: E402
from .curves import save_figure  # noqa: E402

CURVE_COLUMNS = ["init", "fraction", "seed", "epoch", "AP50", "AP75"]


def ap_curve_frame(cells, evaluations) -> pd.DataFrame:
    """Rows ``init, fraction, seed, epoch, AP50, AP75`` (AP in %) from evaluation summaries.

    Args:
        cells: ``[init, fraction, seed, epoch]`` per summary (the table's init names).
        evaluations: the summaries (``evaluate_detections`` dicts or JSON paths), same order.
    """
    cells, evaluations = list(cells), list(evaluations)
    if len(cells) != len(evaluations):
        raise ValueError(f"ap_curves: {len(cells)} cells but {len(evaluations)} evaluation files")
    rows = []
    for (init, fraction, seed, epoch), summary in zip(cells, evaluations):
        m_ap = read_summary(summary).get("mAP")
        if m_ap is None:
            raise ValueError(f"ap_curves: evaluation summary {summary} has no 'mAP'")
        rows.append([init, float(fraction), int(seed), int(epoch),
                     100.0 * float(m_ap.get("AP50", float("nan"))), 100.0 * float(m_ap.get("AP75", float("nan")))])
    return pd.DataFrame(rows, columns=CURVE_COLUMNS).sort_values(["init", "fraction", "seed", "epoch"])


def plot_ap_curves(frame: pd.DataFrame, out_png, title: str = "AP50 per fine-tuning epoch",
                   metric: str = "AP50") -> Path:
    """One panel per fraction: mean ``metric`` over seeds against the epoch, per init (band: min..max)."""
    out_png = Path(out_png)
    fractions = sorted(frame["fraction"].unique())
    fig, axes = plt.subplots(1, max(1, len(fractions)), figsize=(5.5 * max(1, len(fractions)), 4.2), squeeze=False)
    inits = sorted(frame["init"].unique(), key=lambda i: (i != "none", "." in i, i))
    styles = {init: ("--" if "." in init else "-") for init in inits}  # other pre-training sets dashed
    for ax, fraction in zip(axes[0], fractions):
        part = frame[frame["fraction"] == fraction]
        for k, init in enumerate(inits):
            runs = part[part["init"] == init]
            if runs.empty:
                continue
            stats = runs.groupby("epoch")[metric].agg(["mean", "min", "max", "size"])
            colour = f"C{k}"
            name = "none (no pre-training)" if init == "none" else method_label(init)
            ax.plot(stats.index, stats["mean"], styles[init], color=colour, marker="o", ms=3,
                    label=f"{name} (n={int(stats['size'].max())})")
            ax.fill_between(stats.index, stats["min"], stats["max"], color=colour, alpha=0.15, lw=0)
        ax.set_title(f"{fraction * 100:g} % of the labelled images")
        ax.set_xlabel("fine-tuning epoch")
        ax.set_ylabel(f"{metric} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title} (mean over seeds; band = min..max)")
    return save_figure(fig, out_png)


def write_ap_curves(cells, evaluations, out_png, out_csv, title: str = "AP50 per fine-tuning epoch") -> pd.DataFrame:
    """What rule ``ap_curves`` runs: the curve table as CSV and its picture."""
    frame = ap_curve_frame(cells, evaluations)
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_csv, index=False, float_format="%.4f", lineterminator="\n")
    plot_ap_curves(frame, out_png, title)
    return frame
