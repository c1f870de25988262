"""Loss curves from the engine's ``losses.csv`` (columns ``epoch, iter, lr, loss, grad_norm, <terms>``).

One PNG per run: the total loss and the main loss terms against iterations (the final decoder layer's
terms; auxiliary-layer copies ``*_0``, ``*_1`` ... are left out so the picture stays readable), with the
learning rate on a second axis. ``plot_training_curves`` draws every run of the pipeline into one folder,
named after the run's path, for the Snakemake report.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on cluster nodes
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

log = logging.getLogger("mutdet.reporting")

_AUX = re.compile(r"_\d+$")
MAX_TERMS = 8


def plot_run_losses(losses_csv, out_png, title: str | None = None) -> Path:
    """Plot one run's ``losses.csv`` to ``out_png``; raises ``ValueError`` naming the file when it holds
    no rows (a run that logged nothing: ``log_interval`` longer than the run)."""
    losses_csv, out_png = Path(losses_csv), Path(out_png)
    frame = pd.read_csv(losses_csv)
    if frame.empty or "loss" not in frame.columns:
        raise ValueError(f"{losses_csv}: no loss rows to plot (is train.log_interval longer than the run?)")
    terms = [c for c in frame.columns if c not in ("epoch", "iter", "lr", "loss", "grad_norm") and not _AUX.search(c)]
    # the largest terms first: those are the ones a reader compares
    terms = sorted(terms, key=lambda c: -float(frame[c].abs().mean()))[:MAX_TERMS]
    fig, (ax_total, ax_terms) = plt.subplots(1, 2, figsize=(12, 4.2))
    ax_total.plot(frame["iter"], frame["loss"], color="black", lw=1.5, label="total loss")
    ax_total.set_xlabel("iteration")
    ax_total.set_ylabel("total loss")
    ax_lr = ax_total.twinx()
    ax_lr.plot(frame["iter"], frame["lr"], color="tab:gray", lw=1, ls="--", label="learning rate")
    ax_lr.set_ylabel("learning rate")
    ax_total.legend(loc="upper right", fontsize=8)
    for term in terms:
        ax_terms.plot(frame["iter"], frame[term], lw=1, label=term)
    ax_terms.set_xlabel("iteration")
    ax_terms.set_ylabel("loss term (last decoder layer)")
    if terms:
        ax_terms.legend(fontsize=7, ncol=2)
    fig.suptitle(title or str(losses_csv.parent))
    return save_figure(fig, out_png)


def save_figure(fig, out_png) -> Path:
    """Lay out, write and close ``fig``; written beside ``out_png`` and renamed, so a killed job never
    leaves a half-written picture under the final name."""
    out_png = Path(out_png)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(out_png.stem + ".part.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out_png)
    return out_png


def plot_training_curves(checkpoints, out_dir, results_dir="results") -> list[Path]:
    """One PNG per run folder holding ``checkpoints`` (their ``losses.csv``), in ``out_dir``.

    The PNG is named after the run's path under ``results_dir`` with ``/`` as ``__``, e.g.
    ``pretrain__dota_train__resnet50_ars_detr__mutdet.png``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for run_dir in dict.fromkeys(Path(c).parent for c in checkpoints):
        losses = run_dir / "losses.csv"
        if not losses.is_file():
            raise FileNotFoundError(f"{losses} does not exist: the run in {run_dir} wrote no loss log")
        try:
            name = run_dir.relative_to(results_dir).as_posix()
        except ValueError:
            name = run_dir.as_posix().strip("/")
        written.append(plot_run_losses(losses, out_dir / (name.replace("/", "__") + ".png"), title=name))
    log.info("%d loss-curve pictures in %s", len(written), out_dir)
    return written
