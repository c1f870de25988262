"""The run-key vocabulary of the paper's experiments: which fine-tuning run, checkpoint and metric a table cell is.

A fine-tuning run is identified by a :class:`RunKey` (seven fields); the pre-training it starts from by the
run's :class:`PretrainKey` (four of them). A table cell is a :class:`Cell`: a run, the epoch whose checkpoint
is evaluated, and a metric. These strings are the config vocabulary of the experiment matrix:

* ``pretrain_method``: ``none`` (pre-training free), ``updetr``, ``aligndet``, ``detreg``, ``mutdet``, or a
  MutDet ablation variant ``mutdet_<codes>`` (Tables 1 and 7), see :func:`method_config`;
* ``pretrain_dataset``: ``none`` (only with ``pretrain_method == "none"``), ``dota_train``, ``rsdet4``;
* ``backbone``: ``resnet50``, ``swin_t``;
* ``detector``: ``ars_detr``, ``rotated_ddetr``, ``csl_ddetr``, ``arcsl_ddetr`` (Table 9);
* ``finetune_dataset``: ``dior_r``, ``dota_v1``, ``ohd_sjtu_s``, ``ohd_sjtu_l`` (the class-list names of
  :mod:`mutdet_core.datasets.classes`);
* ``fraction``: 0.1, 0.25, 0.5, 1.0 of the fine-tuning training images;
* ``schedule_epochs``: length of the fine-tuning schedule (12 = the paper's 1x, 36 = 3x; 24 allowed);
* ``eval_epoch`` (cell only): the checkpoint evaluated, <= ``schedule_epochs`` (Tables 6-8 read epochs 12
  and 24 of the 36-epoch schedule);
* ``metric`` (cell only): ``AP50``, ``AP75``, ``AP50:95`` or a class abbreviation of Tables 2/3 (``APL``,
  ``PL``, ...), which means that class's AP50.

Values are percentages, as printed in the paper.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

BASE_METHODS = ("none", "updetr", "aligndet", "detreg", "mutdet")
PRETRAIN_DATASETS = ("none", "dota_train", "rsdet4")
BACKBONES = ("resnet50", "swin_t")
DETECTORS = ("ars_detr", "rotated_ddetr", "csl_ddetr", "arcsl_ddetr")
FINETUNE_DATASETS = ("dior_r", "dota_v1", "ohd_sjtu_s", "ohd_sjtu_l")
FRACTIONS = (0.1, 0.25, 0.5, 1.0)
EPOCHS = (12, 24, 36)
SUMMARY_METRICS = ("AP50", "AP75", "AP50:95")

# Table 7's five switches, in the paper's column order, with the codes used in method names.
SWITCH_CODES = {
    "cl": "contrastive_loss",
    "ee": "enhanced_embedding",
    "ef": "enhanced_feature",
    "el": "encoder_loss",
    "sh": "siamese_head",
}
# Table 1's calibration mechanisms other than the siamese head (which is the ``sh`` switch).
CALIBRATION_CODES = {"efd": "encoder_feature_distillation", "dcd": "decoder_cross_distillation"}
CODE_ORDER = tuple(SWITCH_CODES) + tuple(CALIBRATION_CODES)

# Table 7 rows whose switch set the text extraction lost (the checkmarks' columns; README.md). They keep a
# name so their paper numbers can be shown, but no run can be configured for them.
UNRESOLVED_METHODS = {
    "mutdet_t7row6": "Table 7 row 6: three of the five switches are checked, which three is not recoverable "
                     "from the text (candidates, none claimed: mutdet_cl_ef_sh, mutdet_ee_ef_sh)",
}

RUN_FIELDS = ("pretrain_method", "pretrain_dataset", "backbone", "detector", "finetune_dataset", "fraction",
              "schedule_epochs")
PRETRAIN_FIELDS = ("pretrain_method", "pretrain_dataset", "backbone", "detector")
CELL_FIELDS = RUN_FIELDS + ("eval_epoch", "metric")
# Columns of an ``our_results`` frame (one row per value; an optional ``seed`` column may repeat cells).
RESULT_COLUMNS = CELL_FIELDS + ("value",)


def method_config(method: str) -> dict | None:
    """The pre-training ``method_cfg`` (``mutdet_core.pretraining.build_pretrainer`` keys) a name stands for.

    ``none`` -> ``None`` (no pre-training); ``updetr`` / ``aligndet`` / ``detreg`` -> ``{"method": name}``;
    ``mutdet`` -> ``{"method": "mutdet"}`` (every switch at its default, on). ``mutdet_<codes>`` turns on
    exactly the listed codes, in the order ``cl ee ef el sh efd dcd``, e.g. ``mutdet_cl_ee_ef_el_efd`` (Table 1's
    encoder feature distillation) -> ``{"method": "mutdet", "contrastive_loss": True, "enhanced_embedding":
    True, "enhanced_feature": True, "encoder_loss": True, "calibration": "encoder_feature_distillation"}``.
    ``sh`` is ``calibration: "siamese_head"``; no calibration code is ``calibration: "none"``. MutDet with
    every switch off is DETReg (Table 7 row 1), spelled ``detreg``.

    Raises:
        ValueError: unknown name or code, codes repeated or out of order, two calibrations, a calibration
            without ``ef`` (it calibrates the enhanced pass), or an unresolved Table 7 row.
    """
    if method == "none":
        return None
    if method in ("updetr", "aligndet", "detreg", "mutdet"):
        return {"method": method}
    if method in UNRESOLVED_METHODS:
        raise ValueError(f"pre-training method {method!r} cannot be configured: {UNRESOLVED_METHODS[method]}")
    if not method.startswith("mutdet_"):
        raise ValueError(f"unknown pre-training method {method!r}; expected one of {BASE_METHODS} or "
                         f"'mutdet_<codes>' with codes from {CODE_ORDER}")
    codes = method[len("mutdet_"):].split("_")
    unknown = [c for c in codes if c not in CODE_ORDER]
    if unknown:
        raise ValueError(f"pre-training method {method!r}: unknown switch codes {unknown}; known: {CODE_ORDER}")
    positions = [CODE_ORDER.index(c) for c in codes]
    if positions != sorted(set(positions)):
        raise ValueError(f"pre-training method {method!r}: codes must be unique and in the order {CODE_ORDER}")
    calibrations = [c for c in codes if c in ("sh",) + tuple(CALIBRATION_CODES)]
    if len(calibrations) > 1:
        raise ValueError(f"pre-training method {method!r}: at most one calibration among sh/efd/dcd, "
                         f"got {calibrations}")
    if calibrations and "ef" not in codes:
        raise ValueError(f"pre-training method {method!r}: calibration {calibrations[0]!r} needs the enhanced "
                         f"feature 'ef'")
    cfg = {"method": "mutdet", **{SWITCH_CODES[c]: c in codes for c in ("cl", "ee", "ef", "el")}}
    cfg["calibration"] = {"sh": "siamese_head", **CALIBRATION_CODES}[calibrations[0]] if calibrations else "none"
    return cfg


def canonical_method(method: str) -> str:
    """The vocabulary's spelling: ``mutdet_cl_ee_ef_el_sh`` -> ``mutdet``; switch-less MutDet has no code name
    (it is ``detreg``). Raises ``ValueError`` for names :func:`method_config` rejects."""
    if method in UNRESOLVED_METHODS:
        return method
    cfg = method_config(method)
    if cfg is None or len(cfg) == 1:
        return method
    codes = [c for c in ("cl", "ee", "ef", "el") if cfg[SWITCH_CODES[c]]]
    codes += {"none": [], "siamese_head": ["sh"], **{v: [k] for k, v in CALIBRATION_CODES.items()}}[
        cfg["calibration"]]
    return "mutdet" if codes == list(SWITCH_CODES) else "mutdet_" + "_".join(codes)


def is_configurable(method: str) -> bool:
    """False for the Table 7 row whose switches are unknown (``UNRESOLVED_METHODS``)."""
    return method not in UNRESOLVED_METHODS


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


@dataclass(frozen=True, order=True)
class PretrainKey:
    """One pre-training run (not needed when ``pretrain_method == "none"``)."""

    pretrain_method: str
    pretrain_dataset: str
    backbone: str
    detector: str

    @property
    def run_id(self) -> str:
        """Path- and wildcard-safe id, e.g. ``mutdet.dota_train.resnet50.ars_detr``."""
        return ".".join((self.pretrain_method, self.pretrain_dataset, self.backbone, self.detector))


@dataclass(frozen=True, order=True)
class RunKey:
    """One fine-tuning run. Validated on construction (``ValueError`` naming the bad field)."""

    pretrain_method: str
    pretrain_dataset: str
    backbone: str
    detector: str
    finetune_dataset: str
    fraction: float
    schedule_epochs: int

    def __post_init__(self):
        if self.pretrain_method not in UNRESOLVED_METHODS:
            if canonical_method(self.pretrain_method) != self.pretrain_method:
                raise ValueError(f"pretrain_method {self.pretrain_method!r} is spelled "
                                 f"{canonical_method(self.pretrain_method)!r} in the vocabulary")
        _check_choice("pretrain_dataset", self.pretrain_dataset, PRETRAIN_DATASETS)
        if (self.pretrain_method == "none") != (self.pretrain_dataset == "none"):
            raise ValueError(f"pretrain_dataset is 'none' exactly when pretrain_method is 'none', got "
                             f"{self.pretrain_method!r} on {self.pretrain_dataset!r}")
        _check_choice("backbone", self.backbone, BACKBONES)
        _check_choice("detector", self.detector, DETECTORS)
        _check_choice("finetune_dataset", self.finetune_dataset, FINETUNE_DATASETS)
        if not any(math.isclose(float(self.fraction), f) for f in FRACTIONS):
            raise ValueError(f"fraction must be one of {FRACTIONS}, got {self.fraction!r}")
        object.__setattr__(self, "fraction", float(self.fraction))
        if int(self.schedule_epochs) != self.schedule_epochs:
            raise ValueError(f"schedule_epochs must be an integer, got {self.schedule_epochs!r}")
        object.__setattr__(self, "schedule_epochs", int(self.schedule_epochs))
        _check_choice("schedule_epochs", self.schedule_epochs, EPOCHS)

    @property
    def pretrain(self) -> PretrainKey | None:
        """The pre-training this run starts from; ``None`` for the pre-training-free baseline."""
        if self.pretrain_method == "none":
            return None
        return PretrainKey(self.pretrain_method, self.pretrain_dataset, self.backbone, self.detector)

    @property
    def run_id(self) -> str:
        """Path- and wildcard-safe id, e.g. ``mutdet.dota_train.resnet50.ars_detr.dior_r.f010.e36``."""
        return ".".join((self.pretrain_method, self.pretrain_dataset, self.backbone, self.detector,
                         self.finetune_dataset, f"f{round(self.fraction * 100):03d}", f"e{self.schedule_epochs}"))

    @classmethod
    def from_run_id(cls, run_id: str) -> "RunKey":
        parts = run_id.split(".")
        if len(parts) != 7 or not parts[5].startswith("f") or not parts[6].startswith("e"):
            raise ValueError(f"not a run id (method.pretrain_dataset.backbone.detector.dataset.fNNN.eNN): {run_id!r}")
        return cls(*parts[:5], fraction=int(parts[5][1:]) / 100, schedule_epochs=int(parts[6][1:]))

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Cell:
    """One number of a table: which paper row and column it sits in, and which run/checkpoint/metric it is.

    Attributes:
        table: table number 1-9.
        row_index: 1-based position of the row in the paper's table.
        row: the paper's row label (e.g. ``"MutDet (Ours)"``).
        column: the paper's column header path joined by ``" / "`` (e.g. ``"12 Epoch / AP50"``).
        run: the fine-tuning run.
        eval_epoch: the checkpoint evaluated.
        metric: ``AP50`` / ``AP75`` / ``AP50:95`` / class abbreviation (= that class's AP50).
    """

    table: int
    row_index: int
    row: str
    column: str
    run: RunKey
    eval_epoch: int
    metric: str

    def __post_init__(self):
        _check_choice("eval_epoch", self.eval_epoch, EPOCHS)
        if self.eval_epoch > self.run.schedule_epochs:
            raise ValueError(f"eval_epoch {self.eval_epoch} is after the end of a {self.run.schedule_epochs}-epoch "
                             f"schedule")

    @property
    def key(self) -> tuple:
        """(run fields..., eval_epoch, metric): what an ``our_results`` row must carry to fill this cell."""
        return tuple(getattr(self.run, f.name) for f in fields(RunKey)) + (self.eval_epoch, self.metric)
