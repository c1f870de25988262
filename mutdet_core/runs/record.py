"""What a run folder records about itself, so a rerun knows whether it is done, resumable, or foreign.

Every training run folder holds, beside the engine's files (``last.pth``, ``epoch_<E>.pth``, ``losses.csv``):

    run.json        written before training: ``fingerprint`` (hash of ``identity``) and ``identity`` = the
                    run kind, its configs (detector, method, data, the trajectory keys and checkpoint
                    epochs of the training config) and the fingerprints of its input stores / checkpoint
    <kind>.json     written when training has finished: the summary (``fingerprint`` again, losses at
                    start and end, iterations, seconds, checkpoints, ...)

A rerun with the same fingerprint and a finished summary returns at once without reading any data. A rerun
whose fingerprint differs while a ``last.pth`` is there is an error that names what changed: resuming
would mix two runs (the engine itself only compares the training config, not the data or the model).
With ``overwrite`` (what the Snakemake rules pass: they rerun a job because an input or a setting changed)
such a folder is emptied instead and the run starts afresh; a run of the same identity still resumes.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from ..engine.config import TRAJECTORY_KEYS, TrainConfig
from ..engine.trainer import LAST

RUN_FILE = "run.json"


class RunFolderError(RuntimeError):
    """A run folder that holds a run of other inputs or settings."""


def run_identity(kind: str, configs: dict, inputs: dict, train_cfg: TrainConfig) -> dict:
    """The JSON document that identifies a run. ``configs``: JSON-able settings; ``inputs``: name ->
    fingerprint (or path) of what the run reads. Of the training config, the keys that change the
    trajectory count, and the epochs that get a checkpoint (a finished run without a newly asked-for
    checkpoint is not the run asked for); logging and worker settings do not."""
    trajectory = {k: v for k, v in train_cfg.to_dict().items() if k in TRAJECTORY_KEYS}
    trajectory["save_epochs"] = train_cfg.save_epochs
    return json.loads(json.dumps({"kind": kind, "configs": configs, "train": trajectory, "inputs": inputs},
                                 sort_keys=True, default=str))


def file_digest(path) -> str:
    """First 16 hex digits of the SHA-256 of a file's bytes: the identity of a checkpoint a run reads. Its
    path and size are not enough: a rerun pre-training writes a new checkpoint of the same size to the
    same path (about 1 s per 500 MB)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def fingerprint(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def write_json(path, data) -> Path:
    """Write ``data`` as indented JSON atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
    return path


def read_json(path) -> dict | None:
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # a damaged record is treated as absent; the checkpoints decide


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def finished_summary(out_dir, summary_name: str, identity: dict, overwrite: bool = False,
                     is_main: bool = True, log: logging.Logger | None = None) -> dict | None:
    """The summary of a finished run of this identity in ``out_dir`` (its checkpoints all present), else None.

    Args:
        overwrite: empty a folder that holds a run of another identity (only the main process deletes;
            the caller synchronises the processes afterwards).
    Raises:
        RunFolderError: ``out_dir`` holds a resumable or finished run of another identity (no ``overwrite``).
    """
    out_dir = Path(out_dir)
    ours = fingerprint(identity)
    recorded = read_json(out_dir / RUN_FILE)
    if recorded is not None and recorded.get("fingerprint") != ours and (out_dir / LAST).is_file():
        changed = _differences(recorded.get("identity", {}), identity)
        if overwrite:
            if is_main:
                (log or logging.getLogger(__name__)).warning(
                    "%s holds a run of other inputs or settings (%s): removing it and starting afresh", out_dir,
                    "; ".join(changed[:8]))
                shutil.rmtree(out_dir)
            return None
        raise RunFolderError(
            f"{out_dir} holds a run of other inputs or settings ({'; '.join(changed[:8]) or 'unknown difference'}"
            f"{'; ...' if len(changed) > 8 else ''}); resuming would mix two runs. Restore them, or delete "
            f"{out_dir} to start afresh.")
    summary = read_json(out_dir / summary_name)
    if summary is None or summary.get("fingerprint") != ours:
        return None
    if not all(Path(p).is_file() for p in summary.get("checkpoints", {}).values()):
        return None
    return summary


def start_run(out_dir, identity: dict) -> None:
    """Record the identity of the run about to train (main process only)."""
    write_json(Path(out_dir) / RUN_FILE, {"fingerprint": fingerprint(identity), "identity": identity})


def loss_summary(losses_csv) -> dict:
    """``{"rows", "loss_start", "loss_end", "iteration_end"}`` from the engine's ``losses.csv`` (weighted
    totals of the first and last logged interval; None when the file has no row)."""
    path = Path(losses_csv)
    rows = []
    if path.is_file():
        with path.open(newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if r.get("loss")]
    if not rows:
        return {"rows": 0, "loss_start": None, "loss_end": None, "iteration_end": None}
    return {"rows": len(rows), "loss_start": float(rows[0]["loss"]), "loss_end": float(rows[-1]["loss"]),
            "iteration_end": int(rows[-1]["iter"])}


def log_done(log: logging.Logger, out_dir, summary: dict) -> None:
    log.info("%s: finished run found (fingerprint %s, %s epochs): nothing to do", out_dir, summary.get("fingerprint"),
             summary.get("epochs"))
