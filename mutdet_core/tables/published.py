"""The paper's published numbers (``paper/table{n}.csv``), loaded and checked against the table layouts.

Each CSV is long form, one row per number (schema in ``paper/README.md``):
``table, row_index, row, column, <run keys>, eval_epoch, metric, value, paper_delta, note``.
``value`` is the percentage as printed; ``paper_delta`` the ``+x.x`` annotation printed beside it (empty
where the paper prints none). Loading checks every row against :mod:`.layout` so the data and the layout
cannot drift apart.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .layout import get_layout
from .vocabulary import RUN_FIELDS

PAPER_DIR = Path(__file__).resolve().parent / "paper"
PAPER_COLUMNS = ("table", "row_index", "row", "column") + RUN_FIELDS + ("eval_epoch", "metric", "value",
                                                                         "paper_delta", "note")
_DTYPES = {"table": int, "row_index": int, "fraction": float, "schedule_epochs": int, "eval_epoch": int,
           "value": float, "paper_delta": float}


def paper_csv_path(n: int) -> Path:
    get_layout(n)
    return PAPER_DIR / f"table{n}.csv"


def load_paper_table(n: int, path=None) -> pd.DataFrame:
    """Table ``n``'s published numbers, one row per cell in the layout's (row-major) order.

    Raises:
        ValueError: naming the file (and CSV line) when a column is missing, a value is not a number, or the
            rows do not match the layout's cells one to one (same row, column, run keys, epoch, metric).
    """
    layout = get_layout(n)
    path = Path(path) if path is not None else paper_csv_path(n)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    missing = [c for c in PAPER_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    for column, kind in _DTYPES.items():
        converted = []
        for i, text in enumerate(frame[column]):
            if text == "" and column == "paper_delta":
                converted.append(float("nan"))
                continue
            try:
                converted.append(kind(text))
            except ValueError:
                raise ValueError(f"{path}:{i + 2}: column {column!r} is {text!r}, not a {kind.__name__}") from None
        frame[column] = converted
    cells = layout.cells()
    if len(frame) != len(cells):
        raise ValueError(f"{path}: {len(frame)} rows, but Table {n}'s layout has {len(cells)} cells")
    for i, (cell, rec) in enumerate(zip(cells, frame.itertuples(index=False)), start=2):
        expected = (n, cell.row_index, cell.row, cell.column) + cell.key
        got = (rec.table, rec.row_index, rec.row, rec.column) + tuple(getattr(rec, f) for f in RUN_FIELDS) \
            + (rec.eval_epoch, rec.metric)
        if expected != got:
            raise ValueError(f"{path}:{i}: row {got} does not match the layout's cell {expected}")
    return frame[list(PAPER_COLUMNS)]


def load_all_paper_tables() -> pd.DataFrame:
    """Tables 1-9 concatenated."""
    return pd.concat([load_paper_table(n) for n in range(1, 10)], ignore_index=True)


def paper_value(n: int, row: str | int, column: str) -> float:
    """One published number by row label (first match) or 1-based row index, and column label."""
    frame = load_paper_table(n)
    hit = frame[(frame["row_index"] == row) if isinstance(row, int) else (frame["row"] == row)]
    hit = hit[hit["column"] == column]
    if hit.empty:
        raise KeyError(f"Table {n} has no cell at row {row!r}, column {column!r}")
    return float(hit["value"].iloc[0])
