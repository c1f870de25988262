"""The layout of the paper's Tables 1-9, and which experiment fills each of their cells.

This is the single place that says which runs a table needs. Each table is a :class:`TableLayout`: the
keys shared by all its cells (``fixed``), its rows (paper label, descriptor columns such as Table 8's
backbone, and the run keys the row sets) and its columns (paper header path and the keys the column sets:
metric, evaluation epoch, and for Tables 4/9 the dataset/schedule/detector). A cell's keys are
``fixed | row.keys | column.keys``; rows and columns never set the same key.

    cells_for_table(5)            -> 40 Cells (5 methods x AP50/AP75 x 4 fractions)
    runs_for_tables(range(1, 10)) -> the unique fine-tuning runs (a run several tables read is listed once)

The settings the text leaves implicit (README.md in ``paper/``): Tables 1, 7 and 9 are DIOR-R, 100 %,
36 epochs (Table 1's and Table 7's 36-epoch numbers equal Table 2's / Table 6's for the shared runs; Table 9's
dataset is not named); Tables 6-8 read epochs 12/24 of the 36-epoch schedule ("we separately report the AP50
at 12, 24, and 36 epochs"), whereas Table 4's 1x column is its own 12-epoch schedule.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ..datasets.classes import DIOR_R, DOTA_V1
from .vocabulary import RUN_FIELDS, Cell, PretrainKey, RunKey, is_configurable


@dataclass(frozen=True)
class Row:
    """A paper row: its label, its descriptor cells (text columns left of the numbers) and its run keys."""

    label: str
    keys: dict
    descriptors: tuple = ()


@dataclass(frozen=True)
class Column:
    """A paper column: header path from the top header line down, and the keys it sets."""

    header: tuple
    keys: dict

    @property
    def label(self) -> str:
        return " / ".join(self.header)


@dataclass(frozen=True)
class TableLayout:
    """One table of the paper.

    Attributes:
        number: 1-9.
        title: our one-line description (the text extraction has no captions).
        label_header: header of the row-label column (``"Method"``, ``"Calibration Mechanism"``, ``"#"``).
        descriptor_headers: headers of the text columns between the label and the numbers.
        fixed: run keys common to every cell.
        rows, columns: in the paper's order.
        decimals: decimals the paper prints (Table 4: 2, others 1).
        delta_reference: 1-based row the paper's printed ``+x.x`` annotations are relative to (None: none).
        notes: what the layout infers rather than reads (shown under the rendered table).
    """

    number: int
    title: str
    label_header: str
    descriptor_headers: tuple
    fixed: dict
    rows: tuple
    columns: tuple
    decimals: int = 1
    delta_reference: int | None = None
    notes: tuple = field(default=())

    def cells(self) -> list[Cell]:
        """Every cell, row-major in the paper's order."""
        out = []
        for i, row in enumerate(self.rows, start=1):
            for col in self.columns:
                overlap = set(row.keys) & set(col.keys)
                if overlap:
                    raise ValueError(f"Table {self.number}: row {row.label!r} and column {col.label!r} both set "
                                     f"{sorted(overlap)}")
                keys = {**self.fixed, **row.keys, **col.keys}
                missing = [k for k in RUN_FIELDS + ("eval_epoch", "metric") if k not in keys]
                if missing:
                    raise ValueError(f"Table {self.number}, row {row.label!r}, column {col.label!r}: no {missing}")
                run = RunKey(**{k: keys[k] for k in RUN_FIELDS})
                out.append(Cell(self.number, i, row.label, col.label, run, keys["eval_epoch"], keys["metric"]))
        return out


# ---------------------------------------------------------------------------------------------- rows

def _method(method: str, pretrain_dataset: str = "dota_train") -> dict:
    return {"pretrain_method": method, "pretrain_dataset": "none" if method == "none" else pretrain_dataset}


# Tables 2-6 and 9: the pre-training methods compared, in the paper's row order.
_METHOD_ROWS = tuple(Row(label, _method(m)) for label, m in (
    ("-", "none"), ("UP-DETR [11]", "updetr"), ("AlignDet [21]", "aligndet"), ("DETReg [1]", "detreg"),
    ("MutDet (Ours)", "mutdet")))

_R50_ARS = {"backbone": "resnet50", "detector": "ars_detr"}
_FULL_36 = {"fraction": 1.0, "schedule_epochs": 36}
_DIOR_FULL = {**_R50_ARS, **_FULL_36, "finetune_dataset": "dior_r"}


def _metric_columns(metrics, epoch=36) -> tuple:
    return tuple(Column((m,), {"metric": m, "eval_epoch": epoch}) for m in metrics)


def _epoch_columns(metrics) -> tuple:
    return tuple(Column((f"{e} Epoch", m), {"eval_epoch": e, "metric": m}) for e in (12, 24, 36) for m in metrics)


TABLE1 = TableLayout(
    1, "Calibration mechanisms for the task gap (ResNet-50 ARS-DETR, DOTA-v1.0 pre-training, DIOR-R 100 %, 36 ep)",
    "Calibration Mechanism", ("Encoder", "Decoder"), {**_DIOR_FULL, "pretrain_dataset": "dota_train"},
    rows=(
        # Without calibration = every Table 7 switch but the siamese head (Table 7 row 5: same 69.4 AP50).
        Row("w/o calibration", {"pretrain_method": "mutdet_cl_ee_ef_el"}, ("-", "-")),
        Row("Encoder Feature Distillation", {"pretrain_method": "mutdet_cl_ee_ef_el_efd"}, ("Distillation", "-")),
        Row("Decoder Cross Distillation", {"pretrain_method": "mutdet_cl_ee_ef_el_dcd"}, ("-", "Distillation")),
        Row("Auxilary Siamese Head", {"pretrain_method": "mutdet"}, ("-", "Training")),
    ),
    columns=_metric_columns(("AP50", "AP75")), delta_reference=1,
    notes=("'w/o calibration' is read as Table 7's row 5 (all switches but the siamese head): both print 69.4 "
           "AP50 at epoch 36.",),
)

TABLE2 = TableLayout(
    2, "DIOR-R test, per-class AP50 (ResNet-50 ARS-DETR, DOTA-v1.0 pre-training, 100 %, 36 ep)",
    "Method", (), _DIOR_FULL, _METHOD_ROWS,
    _metric_columns(DIOR_R.abbreviations + ("AP50", "AP75")),
)

TABLE3 = TableLayout(
    3, "DOTA-v1.0 test, per-class AP50 (ResNet-50 ARS-DETR, DOTA-v1.0 pre-training, 100 %, 36 ep)",
    "Method", (), {**_R50_ARS, **_FULL_36, "finetune_dataset": "dota_v1"}, _METHOD_ROWS,
    _metric_columns(DOTA_V1.abbreviations + ("AP50", "AP75")),
)

TABLE4 = TableLayout(
    4, "OHD-SJTU-S / -L under 1x (12 ep) and 3x (36 ep) schedules (ResNet-50 ARS-DETR, DOTA-v1.0 pre-training)",
    "Method", (), {**_R50_ARS, "fraction": 1.0}, _METHOD_ROWS,
    tuple(Column((name, sched, m), {"finetune_dataset": ds, "schedule_epochs": ep, "eval_epoch": ep, "metric": m})
          for name, ds in (("OHD-SJTU-S [37]", "ohd_sjtu_s"), ("OHD-SJTU-L [37]", "ohd_sjtu_l"))
          for sched, ep in (("1×", 12), ("3×", 36))
          for m in ("AP50", "AP75", "AP50:95")),
    decimals=2,
    notes=("1x is its own 12-epoch schedule (learning-rate decay near its end), not epoch 12 of the 3x run.",),
)

TABLE5 = TableLayout(
    5, "DIOR-R with k % of the training data (ResNet-50 ARS-DETR, DOTA-v1.0 pre-training, 36 ep)",
    "Method", (), {**_R50_ARS, "finetune_dataset": "dior_r", "schedule_epochs": 36, "eval_epoch": 36},
    _METHOD_ROWS,
    tuple(Column((m, f"{round(f * 100)}%"), {"metric": m, "fraction": f})
          for m in ("AP50", "AP75") for f in (0.1, 0.25, 0.5, 1.0)),
    delta_reference=1,
    notes=("The metric headers (AP50 / AP75) are lost in the text extraction; the 100 % columns equal Table 2's "
           "AP50 / AP75.",),
)

TABLE6 = TableLayout(
    6, "DIOR-R at epochs 12 / 24 / 36 of the 36-epoch schedule (ResNet-50 ARS-DETR, DOTA-v1.0 pre-training)",
    "Method", (), _DIOR_FULL, _METHOD_ROWS, _epoch_columns(("AP50", "AP75")), delta_reference=1,
)

_T7_SWITCHES = ("Contrastive Loss", "Enhanced Embedding", "Enhanced Feature", "Encoder Loss", "Siamase Head")
_T7_ROWS = (
    ("detreg", "....."), ("mutdet_cl", "x...."), ("mutdet_cl_ee", "xx..."), ("mutdet_cl_ee_ef", "xxx.."),
    ("mutdet_cl_ee_ef_el", "xxxx."), ("mutdet_t7row6", "?????"), ("mutdet_cl_ee_ef_sh", "xxx.x"),
    ("mutdet", "xxxxx"),
)

TABLE7 = TableLayout(
    7, "Ablation of MutDet's components, DIOR-R AP50 at epochs 12 / 24 / 36 (ResNet-50 ARS-DETR, DOTA-v1.0 "
       "pre-training, 100 %)",
    "#", _T7_SWITCHES, {**_DIOR_FULL, "pretrain_dataset": "dota_train", "metric": "AP50"},
    rows=tuple(Row(f"#{i}", {"pretrain_method": m},
                   tuple({"x": "✓", ".": "", "?": "?"}[c] for c in marks))
               for i, (m, marks) in enumerate(_T7_ROWS, start=1)),
    columns=tuple(Column(("#Epoch", str(e)), {"eval_epoch": e}) for e in (12, 24, 36)),
    delta_reference=1,
    notes=("Rows have no labels in the paper; #1 is the DETReg baseline (same numbers as Table 6's DETReg), #8 "
           "is MutDet.",
           "The text extraction drops empty cells, so only the number of checkmarks per row survives. Rows 1-5 "
           "and 8 follow the text (switches added in column order). Row 6 (3 checks) is unresolved: no run is "
           "configured. Row 7 (4 checks) is read as everything but the encoder loss, which the text's 'encoder "
           "loss synergizes with the siamese head' requires; this is an inference.",),
)

_T8_ROWS = []
for _ds_label, _ds in (("DIOR", "dior_r"), ("DOTA-v1.0", "dota_v1")):
    for _bb_label, _bb, _pre_label, _pre in (("ResNet-50", "resnet50", "DOTA-v1.0", "dota_train"),
                                             ("Swin-Tiny", "swin_t", "RSDet4", "rsdet4")):
        for _label, _m in (("-", "none"), ("DETReg [1]", "detreg"), ("MutDet (Ours)", "mutdet")):
            _T8_ROWS.append(Row(_label, {**_method(_m, _pre), "backbone": _bb, "finetune_dataset": _ds},
                                (_bb_label, "-" if _m == "none" else _pre_label, _ds_label)))

TABLE8 = TableLayout(
    8, "Backbone and pre-training dataset: AP50 at epochs 12 / 24 / 36 of the 36-epoch schedule (ARS-DETR, 100 %)",
    "Method", ("Backbone", "Pre-training Dataset", "Fine-tuning Dataset"),
    {"detector": "ars_detr", **_FULL_36, "metric": "AP50"}, tuple(_T8_ROWS),
    tuple(Column(("#Epoch", str(e)), {"eval_epoch": e}) for e in (12, 24, 36)),
    notes=("The fine-tuning dataset is a merged cell in the paper (DIOR = DIOR-R for rows 1-6, DOTA-v1.0 for "
           "rows 7-12); ResNet-50 rows equal Tables 6 and 3.",),
)

TABLE9 = TableLayout(
    9, "Other DETR detectors (ResNet-50, DOTA-v1.0 pre-training, DIOR-R 100 %, 36 ep)",
    "Methods", (), {"backbone": "resnet50", **_FULL_36, "finetune_dataset": "dior_r"}, _METHOD_ROWS,
    tuple(Column((name, m), {"detector": det, "metric": m, "eval_epoch": 36})
          for name, det in (("Rotated D-DETR", "rotated_ddetr"), ("CSL D-DETR", "csl_ddetr"),
                            ("AR-CSL D-DETR", "arcsl_ddetr"))
          for m in ("AP50", "AP75")),
    notes=("The text does not name Table 9's fine-tuning dataset; DIOR-R 100 % at epoch 36 is assumed (the "
           "paper's default setting).",),
)

LAYOUTS = {t.number: t for t in (TABLE1, TABLE2, TABLE3, TABLE4, TABLE5, TABLE6, TABLE7, TABLE8, TABLE9)}


def get_layout(n: int) -> TableLayout:
    if n not in LAYOUTS:
        raise ValueError(f"the paper has Tables 1-9, got {n!r}")
    return LAYOUTS[n]


def cells_for_table(n: int) -> list[Cell]:
    """Every cell of Table ``n`` (row-major, the paper's order)."""
    return get_layout(n).cells()


def _tables(tables) -> list[int]:
    return [tables] if isinstance(tables, int) else list(tables)


def runs_for_tables(tables: Iterable[int] | int, include_unresolved: bool = False) -> list[RunKey]:
    """The unique fine-tuning runs the tables need, in first-use order (Table 1 first).

    A run read by several tables (e.g. MutDet on DIOR-R 100 % appears in Tables 1, 2, 5, 6, 7, 8) is listed
    once. Runs whose pre-training cannot be configured (Table 7 row 6) are left out unless
    ``include_unresolved``.
    """
    seen = {}
    for n in _tables(tables):
        for cell in cells_for_table(n):
            if include_unresolved or is_configurable(cell.run.pretrain_method):
                seen.setdefault(cell.run, None)
    return list(seen)


def pretrain_runs_for_tables(tables: Iterable[int] | int, include_unresolved: bool = False) -> list[PretrainKey]:
    """The unique pre-training runs behind :func:`runs_for_tables` (the baseline ``none`` needs none)."""
    seen = {}
    for run in runs_for_tables(tables, include_unresolved):
        if run.pretrain is not None:
            seen.setdefault(run.pretrain, None)
    return list(seen)


def evaluations_for_tables(tables: Iterable[int] | int, include_unresolved: bool = False) -> dict:
    """{RunKey: sorted evaluation epochs}: which checkpoints of each run the tables read."""
    out: dict = {}
    for n in _tables(tables):
        for cell in cells_for_table(n):
            if include_unresolved or is_configurable(cell.run.pretrain_method):
                out.setdefault(cell.run, set()).add(cell.eval_epoch)
    return {run: sorted(epochs) for run, epochs in out.items()}
