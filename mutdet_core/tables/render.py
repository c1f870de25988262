"""Render a paper table with our numbers beside the paper's: Markdown in the paper's layout plus a tidy CSV.

``our_results`` is a pandas frame with one row per number: the run keys (``RESULT_COLUMNS`` of
:mod:`.vocabulary`: pretrain_method, pretrain_dataset, backbone, detector, finetune_dataset, fraction,
schedule_epochs, eval_epoch, metric) and ``value``; an optional ``seed`` column (or any repeat of a cell) is
averaged, and the spread shown as ``mean±std``. Rows for cells a table does not have are ignored; cells
with no row show ``—``. Values are percentages unless ``unit="fraction"`` (the evaluator's JSON), which
multiplies them by 100.

Markdown (``style="stacked"``, the default): every paper row becomes three lines, ``paper`` (as printed,
with the paper's ``+x.x`` gain where it prints one), ``ours`` (with our gain over the same reference row) and
``Δ`` = ours - paper, so the three numbers of a cell sit in one column. ``style="cell"`` puts
``ours / paper (Δ)`` in one line per row instead.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .layout import TableLayout, get_layout
from .published import load_paper_table
from .vocabulary import (BACKBONES, DETECTORS, EPOCHS, FINETUNE_DATASETS, FRACTIONS, PRETRAIN_DATASETS,
                         RESULT_COLUMNS, RUN_FIELDS, canonical_method)

MISSING = "—"
_KEY_FIELDS = RUN_FIELDS + ("eval_epoch", "metric")
_CHOICES = {"pretrain_dataset": PRETRAIN_DATASETS, "backbone": BACKBONES, "detector": DETECTORS,
            "finetune_dataset": FINETUNE_DATASETS}


# ----------------------------------------------------------------------------------------- inputs

def _scale(unit: str) -> float:
    if unit not in ("percent", "fraction"):
        raise ValueError(f"unit must be 'percent' or 'fraction', got {unit!r}")
    return 100.0 if unit == "fraction" else 1.0


def _numeric(frame: pd.DataFrame, column: str, what: str) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = frame.index[values.isna() & frame[column].notna()]
    if len(bad):
        raise ValueError(f"{what}: column {column!r} has non-numeric values, e.g. {frame[column].loc[bad[0]]!r} "
                         f"(row {bad[0]})")
    return values


def normalize_results(our_results: pd.DataFrame, unit: str = "percent", what: str = "our_results") -> pd.DataFrame:
    """Validate ``our_results`` and aggregate repeats: one row per cell key with ``ours``, ``ours_std``, ``n``.

    Raises:
        ValueError: a ``RESULT_COLUMNS`` column is missing, a key is outside the vocabulary (e.g. a
            misspelt dataset, which would otherwise silently show every cell as missing), or a value is not a
            number.
    """
    scale = _scale(unit)
    missing = [c for c in RESULT_COLUMNS if c not in our_results.columns]
    if missing:
        raise ValueError(f"{what}: missing columns {missing}; expected {list(RESULT_COLUMNS)}")
    frame = our_results[list(RESULT_COLUMNS)].copy()
    for column, choices in _CHOICES.items():
        unknown = sorted(set(frame[column]) - set(choices))
        if unknown:
            raise ValueError(f"{what}: {column} values {unknown} are not in the vocabulary {choices}")
    for method in sorted(set(frame["pretrain_method"])):
        try:
            if canonical_method(method) != method:
                raise ValueError(f"spell it {canonical_method(method)!r}")
        except ValueError as err:
            raise ValueError(f"{what}: pretrain_method {method!r}: {err}") from None
    for column in ("fraction", "schedule_epochs", "eval_epoch", "value"):
        frame[column] = _numeric(frame, column, what)
    frame = frame.dropna(subset=["value"])
    # 0.1 read from text or computed as 10 / 100 must find the paper's 0.1.
    frame["fraction"] = frame["fraction"].round(6)
    off = sorted(set(frame["fraction"]) - set(FRACTIONS))
    if off:
        raise ValueError(f"{what}: fraction values {off} are not in {FRACTIONS} (write 0.1 for 10 %)")
    for column in ("schedule_epochs", "eval_epoch"):
        off = sorted(set(frame[column]) - set(EPOCHS))
        if off:
            raise ValueError(f"{what}: {column} values {off} are not in {EPOCHS}")
        frame[column] = frame[column].astype(int)
    frame["value"] = frame["value"] * scale
    grouped = frame.groupby(list(_KEY_FIELDS), sort=False)["value"]
    out = pd.DataFrame({"ours": grouped.mean(), "ours_std": grouped.std(ddof=1), "n": grouped.size()})
    return out.reset_index()


def compare_table(n: int, our_results: pd.DataFrame | None, unit: str = "percent") -> pd.DataFrame:
    """Table ``n``'s cells with the paper's value, ours and ``diff = ours - paper`` (NaN where not run).

    Columns: table, row_index, row, column, <run keys>, eval_epoch, metric, paper, paper_delta, ours,
    ours_std, n, ours_delta (ours minus ours of the paper's reference row, Tables 1/5/6/7), diff.
    """
    layout = get_layout(n)
    paper = load_paper_table(n).rename(columns={"value": "paper"}).drop(columns=["note"])
    if our_results is None or len(our_results) == 0:
        merged = paper.assign(ours=float("nan"), ours_std=float("nan"), n=0)
    else:
        ours = normalize_results(our_results, unit)
        merged = paper.merge(ours, on=list(_KEY_FIELDS), how="left", validate="one_to_one")
    for column in ("ours", "ours_std"):
        merged[column] = merged[column].astype(float)
    merged["n"] = merged["n"].fillna(0).astype(int)
    merged["ours_delta"] = float("nan")
    if layout.delta_reference is not None:
        reference = merged[merged["row_index"] == layout.delta_reference].set_index("column")["ours"]
        merged["ours_delta"] = merged["ours"] - merged["column"].map(reference)
        merged.loc[merged["row_index"] == layout.delta_reference, "ours_delta"] = float("nan")
    merged["diff"] = merged["ours"] - merged["paper"]
    order = list(paper.columns[:-2]) + ["paper", "paper_delta", "ours", "ours_std", "n", "ours_delta", "diff"]
    return merged[order]


# --------------------------------------------------------------------------------------- Markdown

def _fmt(value, decimals: int, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


def _fmt_ours(rec, decimals: int) -> str:
    text = _fmt(rec.ours, decimals)
    if rec.n > 1 and not math.isnan(rec.ours_std):
        text += f"±{rec.ours_std:.{decimals}f}"
    return text


def _with_delta(text: str, delta, decimals: int) -> str:
    if text == MISSING or delta is None or (isinstance(delta, float) and math.isnan(delta)):
        return text
    return f"{text} ({delta:+.{decimals}f})"


def pipe_table(header: list[str], rows: list[list[str]], n_left: int = 1) -> str:
    """A GitHub pipe table; the first ``n_left`` columns left-aligned, the rest right-aligned."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    align = "|" + "|".join([":---"] * n_left + ["---:"] * (len(header) - n_left)) + "|"
    return "\n".join([line(header), align] + [line(r) for r in rows]) + "\n"


def markdown_table(layout: TableLayout, compared: pd.DataFrame, style: str = "stacked") -> str:
    """The Markdown of one table from :func:`compare_table`'s frame."""
    if style not in ("stacked", "cell"):
        raise ValueError(f"style must be 'stacked' or 'cell', got {style!r}")
    d = layout.decimals
    columns = [c.label for c in layout.columns]
    by_row = {i: frame.set_index("column").loc[columns] for i, frame in compared.groupby("row_index")}
    lead = [layout.label_header] + list(layout.descriptor_headers)
    rows = []
    if style == "stacked":
        header = lead + [""] + columns
        for i, row in enumerate(layout.rows, start=1):
            recs = list(by_row[i].itertuples())
            first = [row.label] + list(row.descriptors)
            blank = [""] * len(first)
            rows.append(first + ["paper"] + [_with_delta(_fmt(r.paper, d), r.paper_delta, d) for r in recs])
            rows.append(blank + ["ours"] + [_with_delta(_fmt_ours(r, d), r.ours_delta, d) for r in recs])
            rows.append(blank + ["Δ"] + [_fmt(r.diff, d, signed=True) for r in recs])
    else:
        header = lead + columns
        for i, row in enumerate(layout.rows, start=1):
            cells = []
            for r in by_row[i].itertuples():
                text = f"{_fmt_ours(r, d)} / {_fmt(r.paper, d)}"
                cells.append(text if math.isnan(r.diff) else f"{text} ({r.diff:+.{d}f})")
            rows.append([row.label] + list(row.descriptors) + cells)
    found = int((compared["n"] > 0).sum())
    lines = [f"**Table {layout.number}.** {layout.title}", "", pipe_table(header, rows, n_left=len(lead) + 1
                                                                          if style == "stacked" else len(lead))]
    legend = ("paper = as printed (its `(+x)` is the gain over row 1); ours = our run, `(+x)` our gain over "
              "our row 1; Δ = ours − paper" if layout.delta_reference else "Δ = ours − paper")
    if style == "cell":
        legend = "ours / paper (ours − paper)"
    lines.append(f"AP in %. {legend}; {MISSING} = no result. {found} of {len(compared)} cells have results.")
    lines += [f"- {note}" for note in layout.notes]
    return "\n".join(lines) + "\n"


def _write_atomic(path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def render_table(n: int, our_results: pd.DataFrame | None, out_md, out_csv, unit: str = "percent",
                 style: str = "stacked") -> pd.DataFrame:
    """Write Table ``n`` as Markdown (paper layout, ours beside the paper's) and as a tidy CSV.

    Returns the tidy frame written to ``out_csv`` (see :func:`compare_table`).
    """
    compared = compare_table(n, our_results, unit)
    _write_atomic(out_md, markdown_table(get_layout(n), compared, style))
    _write_atomic(out_csv, compared.to_csv(index=False, float_format="%.4f", lineterminator="\n"))
    return compared


# ------------------------------------------------------------------------- small-scale Table 5

_METHOD_LABELS = {"none": "-", "updetr": "UP-DETR", "aligndet": "AlignDet", "detreg": "DETReg", "mutdet": "MutDet"}


def method_label(init: str) -> str:
    """'detreg' -> 'DETReg'; 'detreg.synthetic_oracle' (pre-trained on another set) -> 'DETReg (synthetic_oracle)'."""
    method, _, pretrain_set = init.partition(".")
    label = _METHOD_LABELS.get(method, method)
    return f"{label} ({pretrain_set})" if pretrain_set else label


def render_small_scale_table5(our_results: pd.DataFrame, out_md, out_csv, unit: str = "percent",
                              metrics=("AP50", "AP75"), title: str = "Synthetic data, fine-tuning with k % of "
                              "the training images (Table 5 layout)", note: str = "") -> pd.DataFrame:
    """A Table 5 look-alike for a run with no paper numbers (e.g. the laptop run on synthetic data).

    ``our_results`` needs ``pretrain_method``, ``fraction``, ``metric``, ``value``; an optional ``seed`` column
    (or any repeated cell) gives ``mean±std``. Other columns are allowed but must hold a single setting (one
    dataset, one epoch, ...), else the table would mix runs. Methods are rows (paper order, then others by
    name), metric groups x fractions are columns; each cell also shows the gain over the ``none`` row.

    ``note``: words printed under the table (how far this run can be read).

    Returns the tidy frame written to ``out_csv``: method, fraction, metric, mean, std, n, delta_vs_none.
    """
    scale = _scale(unit)
    need = ["pretrain_method", "fraction", "metric", "value"]
    missing = [c for c in need if c not in our_results.columns]
    if missing:
        raise ValueError(f"our_results: missing columns {missing}; needs {need} (optional: seed)")
    mixed = [c for c in our_results.columns if c not in need + ["seed"] and our_results[c].nunique(dropna=False) > 1]
    if mixed:
        raise ValueError(f"our_results mixes settings in {mixed}; filter it to one setting first")
    frame = our_results[need].copy()
    for column in ("fraction", "value"):
        frame[column] = _numeric(frame, column, "our_results")
    frame = frame[frame["metric"].isin(metrics)].dropna(subset=["value"])
    if frame.empty:
        raise ValueError(f"our_results has no value for metrics {list(metrics)}")
    frame["value"] *= scale
    grouped = frame.groupby(["pretrain_method", "fraction", "metric"])["value"]
    tidy = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.size()}).reset_index()
    base = tidy[tidy["pretrain_method"] == "none"].set_index(["fraction", "metric"])["mean"]
    tidy["delta_vs_none"] = [m - base.get((f, k), float("nan")) if p != "none" else float("nan")
                             for p, f, k, m in tidy[["pretrain_method", "fraction", "metric", "mean"]].itertuples(
                                 index=False)]
    known = [m for m in _METHOD_LABELS if m in set(tidy["pretrain_method"])]
    methods = known + sorted(set(tidy["pretrain_method"]) - set(known))
    fractions = sorted(set(tidy["fraction"]))
    tidy["_order"] = tidy["pretrain_method"].map(methods.index)
    tidy = tidy.sort_values(["_order", "metric", "fraction"]).drop(columns="_order").rename(
        columns={"pretrain_method": "method"}).reset_index(drop=True)

    index = tidy.set_index(["method", "fraction", "metric"])
    header = ["Method"] + [f"{m} / {f * 100:g}%" for m in metrics for f in fractions]
    rows = []
    for method in methods:
        cells = []
        for m in metrics:
            for f in fractions:
                if (method, f, m) not in index.index:
                    cells.append(MISSING)
                    continue
                r = index.loc[(method, f, m)]
                text = f"{r['mean']:.1f}" + (f"±{r['std']:.1f}" if r["n"] > 1 else "")
                cells.append(_with_delta(text, r["delta_vs_none"], 1))
        rows.append([method_label(method)] + cells)
    seeds = sorted(set(tidy["n"]))
    md = "\n".join([f"**{title}**", "", pipe_table(header, rows),
                    f"AP in %, mean±std over seeds (n per cell: {', '.join(map(str, seeds))}); (+x) = gain over "
                    f"the pre-training-free row; {MISSING} = no result. No paper numbers for this data."]
                   + (["", " ".join(note.split())] if note and note.strip() else [])) + "\n"
    _write_atomic(out_md, md)
    _write_atomic(out_csv, tidy.to_csv(index=False, float_format="%.4f", lineterminator="\n"))
    return tidy
