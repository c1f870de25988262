"""What a training run reports: loss curves (CSV and TensorBoard), log lines, a progress bar.

Every ``log_interval`` iterations (and at the end of each epoch) the losses averaged over the interval are
merged across processes (``all_gather_object``, so a loss present on only some processes is averaged over
those) and rank 0 writes one row:

* ``losses.csv``: ``epoch`` (1-based, the epoch being trained), ``iter`` (optimizer steps done in the whole
  run), ``lr`` (the default group), ``loss`` (the weighted total), ``grad_norm`` (before clipping), then
  every loss the criterion returned, unweighted, in first-seen order. A key first seen later extends the
  header (the file is rewritten once; rows before have it empty).
* ``tensorboard/``: event files with ``loss/total``, ``loss/<key>``, ``lr/<group>``, ``grad_norm``,
  ``speed/it_per_s`` against the global iteration.
* the log: ``epoch 3/36 iter 120/400 | loss 1.234 (loss_cls 0.51, ...) | lr 1.00e-04 | 2.31 it/s | ETA 1:02:03``
  with the last-layer losses (keys without an ``_<i>`` layer suffix) in parentheses.

On resume, rows and events after the checkpoint's iteration (written by the interrupted run after its last
checkpoint) are dropped, so curves never hold the same iteration twice. A fresh (not resumed) run in an
existing folder starts both from empty.
"""
from __future__ import annotations

import csv
import datetime
import logging
import math
import re
import shutil
import sys
import time
from pathlib import Path

from . import distributed

LAYER_SUFFIX = re.compile(r"_\d+$")
FIXED_COLUMNS = ["epoch", "iter", "lr", "loss", "grad_norm"]


class IntervalMeter:
    """Sums of scalars since the last ``pop``; per-key counts, as a key may be missing in some iterations."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def update(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
            self.counts[key] = self.counts.get(key, 0) + 1

    def pop_global_means(self) -> dict[str, float]:
        """Interval means merged over all processes (a collective: every process calls it), then reset."""
        gathered = distributed.all_gather_object((self.sums, self.counts))
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for part_sums, part_counts in gathered:
            for key, value in part_sums.items():
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + part_counts[key]
        self.sums, self.counts = {}, {}
        return {key: sums[key] / counts[key] for key in sums}


class LossCSV:
    """``losses.csv`` writer (see the module docstring)."""

    def __init__(self, path: Path, resume_iteration: int | None):
        self.path = Path(path)
        self.columns: list[str] = list(FIXED_COLUMNS)
        rows: list[dict] = []
        if self.path.is_file() and resume_iteration is not None:
            with self.path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                self.columns = list(reader.fieldnames or FIXED_COLUMNS)
                rows = [row for row in reader if row.get("iter") and int(row["iter"]) <= resume_iteration]
        self._rewrite(rows)

    def _rewrite(self, rows: list[dict]) -> None:
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict) -> None:
        new = [key for key in row if key not in self.columns]
        if new:  # a loss not seen before: widen the header once
            with self.path.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
            self.columns += new
            self._rewrite(rows)
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.columns).writerow(row)


class TrainingMonitor:
    """Rank-0 reporting for ``trainer.train``; other ranks only take part in the interval reduction.

    Args:
        out_dir: run folder (``losses.csv`` and ``tensorboard/`` go there).
        total_epochs, iters_per_epoch: for the log line and the ETA.
        log: logger for the readable lines.
        log_interval: iterations between rows / lines.
        tensorboard: write event files.
        progress_bar: True, False or "auto" (only when stderr is a terminal).
        resume_iteration: the checkpoint's iteration when resuming (None for a fresh run).
    """

    def __init__(self, out_dir, total_epochs: int, iters_per_epoch: int, log: logging.Logger,
                 log_interval: int = 50, tensorboard: bool = True, progress_bar="auto",
                 resume_iteration: int | None = None):
        self.total_epochs = total_epochs
        self.iters_per_epoch = iters_per_epoch
        self.log = log
        self.log_interval = max(1, int(log_interval))
        self.main = distributed.is_main_process()
        self.meter = IntervalMeter()
        self.start_time = time.perf_counter()
        self.start_iteration = resume_iteration or 0
        self.last_time, self.last_iteration = self.start_time, self.start_iteration
        self.csv = self.writer = self.bar = None
        if not self.main:
            return
        out_dir = Path(out_dir)
        self.csv = LossCSV(out_dir / "losses.csv", resume_iteration)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            if resume_iteration is None:  # a fresh run in an old folder: old curves would mix with the new
                shutil.rmtree(out_dir / "tensorboard", ignore_errors=True)

            self.writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_iteration)
        show = sys.stderr.isatty() if progress_bar == "auto" else bool(progress_bar)
        if show:
            from tqdm import tqdm

            total = total_epochs * iters_per_epoch
            self.bar = tqdm(total=total, initial=self.start_iteration, unit="it", dynamic_ncols=True, file=sys.stderr)

    def update(self, losses: dict[str, float], total: float, grad_norm: float | None) -> None:
        """Record one iteration's local values (every process)."""
        values = dict(losses)
        values["loss"] = total
        if grad_norm is not None:
            values["grad_norm"] = grad_norm
        self.meter.update(values)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{total:.4f}", refresh=False)

    def report(self, epoch: int, epoch_iter: int, iteration: int, lrs: dict[str, float]) -> None:
        """Merge the interval over processes and write row, events and log line (collective)."""
        means = self.meter.pop_global_means()
        if not self.main or not means:
            return
        now = time.perf_counter()
        speed = (iteration - self.last_iteration) / max(now - self.last_time, 1e-9)
        overall = (iteration - self.start_iteration) / max(now - self.start_time, 1e-9)
        self.last_time, self.last_iteration = now, iteration
        remaining = self.total_epochs * self.iters_per_epoch - iteration
        eta = datetime.timedelta(seconds=int(remaining / overall)) if overall > 0 else "?"
        lr = next(iter(lrs.values()))
        total = means.pop("loss")
        grad_norm = means.pop("grad_norm", math.nan)

        self.csv.write({"epoch": epoch, "iter": iteration, "lr": f"{lr:.6g}", "loss": f"{total:.6g}",
                        "grad_norm": f"{grad_norm:.6g}", **{k: f"{v:.6g}" for k, v in means.items()}})
        if self.writer is not None:
            self.writer.add_scalar("loss/total", total, iteration)
            for key, value in means.items():
                self.writer.add_scalar(f"loss/{key}", value, iteration)
            for name, value in lrs.items():
                self.writer.add_scalar(f"lr/{name}", value, iteration)
            if not math.isnan(grad_norm):
                self.writer.add_scalar("grad_norm", grad_norm, iteration)
            self.writer.add_scalar("speed/it_per_s", speed, iteration)
            self.writer.flush()
        main_losses = ", ".join(f"{k} {v:.4g}" for k, v in means.items() if not LAYER_SUFFIX.search(k)
                                and not k.startswith(("enc_", "dn_")))
        self.log.info(
            "epoch %d/%d iter %d/%d | loss %.4f (%s) | lr %.2e | %.2f it/s | ETA %s",
            epoch, self.total_epochs, epoch_iter, self.iters_per_epoch, total, main_losses, lr, speed, eta,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
