"""Our results as the tables read them: evaluation summaries -> ``our_results`` rows, and a results CSV reader.

An ``our_results`` row is ``RESULT_COLUMNS`` (:mod:`.vocabulary`): the run keys, ``eval_epoch``, ``metric``,
``value`` (percent), optionally ``seed``. The evaluator (``mutdet_core.evaluation.dota_eval``) writes AP as
fractions with full class names; :func:`evaluation_rows` turns one such summary into table rows, naming
per-class AP50 by the paper's class abbreviation (Tables 2 and 3).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..datasets.classes import get_class_list
from .render import normalize_results
from .vocabulary import RESULT_COLUMNS, SUMMARY_METRICS, RunKey


def read_summary(summary: dict | str | Path) -> dict:
    """An ``evaluate_detections`` dict as given, or read from its JSON file (errors name the file)."""
    if isinstance(summary, dict):
        return summary
    path = Path(summary)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read the evaluation summary: {err}") from None


def evaluation_rows(run: RunKey, eval_epoch: int, result: dict | str | Path, seed: int | None = None) -> pd.DataFrame:
    """``our_results`` rows of one evaluated checkpoint.

    Args:
        run: the fine-tuning run.
        eval_epoch: the epoch of the evaluated checkpoint.
        result: the dict of ``evaluate_detections`` (or the path of its JSON summary): ``mAP`` {"AP50",
            "AP75", "AP50:95"} and ``per_class`` {class name: {"AP50", ...}}, AP as fractions.
        seed: written to a ``seed`` column when given (repeats of a run are averaged by the renderer).

    Returns:
        A frame with ``RESULT_COLUMNS`` (+ ``seed``): AP50/AP75/AP50:95 where computed, and each class's AP50
        under its abbreviation when the dataset's class list has abbreviations (DIOR-R, DOTA-v1.0). Values in %.
    """
    result = read_summary(result)
    if "mAP" not in result or "per_class" not in result:
        raise ValueError("evaluation summary has no 'mAP' / 'per_class' (expected evaluate_detections' dict)")
    values = {m: result["mAP"].get(m) for m in SUMMARY_METRICS}
    classes = get_class_list(run.finetune_dataset)
    if classes.abbreviations is not None:
        for name, entry in result["per_class"].items():
            # A class outside the mAP (mmrotate convention, no ground truth) has no AP to compare.
            if entry.get("in_map", True) is not False:
                values[classes.abbreviation(name)] = entry.get("AP50")
    rows = [{**run.as_dict(), "eval_epoch": int(eval_epoch), "metric": metric, "value": 100.0 * float(v)}
            for metric, v in values.items() if v is not None]
    frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    if seed is not None:
        frame["seed"] = int(seed)
    return frame


def read_results_csv(path) -> pd.DataFrame:
    """Read an ``our_results`` CSV (percent values) and validate it; errors name the file."""
    frame = pd.read_csv(path)
    normalize_results(frame, what=str(path))
    return frame


def small_scale_results(evaluations) -> pd.DataFrame:
    """``our_results`` rows of a small-scale data-fraction study (the embedded default's Table 5 look-alike).

    Args:
        evaluations: iterable of ``(pretrain_method, fraction, seed, summary)``; ``summary`` is an
            ``evaluate_detections`` dict or the path of its JSON.
    Returns:
        A frame with ``pretrain_method``, ``fraction``, ``seed``, ``metric`` (AP50, AP75, AP50:95), ``value`` (%).
    """
    rows = []
    for method, fraction, seed, summary in evaluations:
        summary = read_summary(summary)
        if "mAP" not in summary:
            raise ValueError(f"evaluation summary of {method} / {fraction} / seed {seed} has no 'mAP'")
        for metric in SUMMARY_METRICS:
            value = summary["mAP"].get(metric)
            if value is not None:
                rows.append({"pretrain_method": method, "fraction": float(fraction), "seed": int(seed),
                             "metric": metric, "value": 100.0 * float(value)})
    return pd.DataFrame(rows, columns=["pretrain_method", "fraction", "seed", "metric", "value"])


def per_seed_results(our_results: pd.DataFrame, metrics=("AP50", "AP75")) -> pd.DataFrame:
    """One row per run of a small-scale study: ``method`` (the table's label, e.g. 'MutDet (synthetic_oracle)'),
    ``init`` ('none', 'mutdet', 'mutdet.synthetic_oracle'), ``fraction``, ``seed`` and one column per metric (%)."""
    from .render import method_label

    frame = our_results[our_results["metric"].isin(metrics)]
    wide = frame.pivot_table(index=["pretrain_method", "fraction", "seed"], columns="metric", values="value",
                             aggfunc="first").reset_index().rename(columns={"pretrain_method": "init"})
    wide.columns.name = None
    wide.insert(0, "method", wide["init"].map(method_label))
    return wide[["method", "init", "fraction", "seed", *[m for m in metrics if m in wide.columns]]]


def write_paper_table(number: int, cells, evaluations, out_md, out_csv) -> pd.DataFrame:
    """Table ``number`` from our evaluation summaries, beside the paper's numbers (what rule ``table<n>`` runs).

    Args:
        cells: ``[run id, eval epoch, seed]`` per evaluation (``RunKey.run_id``, e.g.
            ``mutdet.dota_train.resnet50.ars_detr.dior_r.f010.e36``).
        evaluations: the evaluation JSON of each cell, same order.
        out_md, out_csv: the paper-layout Markdown and the tidy CSV (``render.render_table``).
    """
    from .render import render_table
    from .vocabulary import RunKey

    cells, evaluations = list(cells), list(evaluations)
    if len(cells) != len(evaluations):
        raise ValueError(f"Table {number}: {len(cells)} cells but {len(evaluations)} evaluation files")
    frames = [evaluation_rows(RunKey.from_run_id(run_id), int(epoch), path, seed=int(seed))
              for (run_id, epoch, seed), path in zip(cells, evaluations)]
    ours = pd.concat(frames, ignore_index=True) if frames else None
    return render_table(number, ours, out_md, out_csv)
