"""Start-up cost: the light entry points import no torch, torchvision, sklearn, shapely, SAM, faiss or timm.

Every Snakemake job parses ``rules/common.smk`` (config validation, the run matrix, the dataset checks), and
every ``mutdet`` call builds the whole argument parser: importing torch there alone cost 6 s per job on
the 2-core machine (issue 16). Each check runs in a fresh interpreter, so what an earlier test imported
does not hide an import.
"""
from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "sklearn", "shapely", "segment_anything", "faiss", "timm")
CONFIGS = ("config.yaml", "configs/mini.yaml", "configs/paper.yaml")

CHECK_HEAVY = f"""
import sys
heavy = [m for m in {HEAVY!r} if m in sys.modules]
assert not heavy, f"heavy modules imported: {{heavy}}"
"""

# what rules/common.smk runs at DAG time, on each shipped config
DAG_TIME = """
from mutdet_core.config import load_config, pseudo_label_block_problems, validate_config
from mutdet_core.datasets.splits import check_dataset_layout, split_inputs
from mutdet_core.runs import plan
from mutdet_core.synthetic.stage import check_synthetic_classes

for path in {configs!r}:
    config = load_config(path)
    validate_config(config, source=path)
    pseudo_label_block_problems(config)
    plan.check_run_configs(config)
    check_synthetic_classes(config)
    [check_dataset_layout(entry, name) for name, entry in config["datasets"].items()]
    plan.check_checkpoint_files(config)
    plan.finetune_plans(config), plan.grid_plans(config), plan.pretrain_plans(config), plan.pretrain_epochs(config)
    plan.model_names(config)
"""

LIGHT_ENTRIES = {
    "runs.plan": "import mutdet_core.runs.plan",
    "common.smk imports": ("from mutdet_core.config import ConfigError, validate_config\n"
                           "from mutdet_core.datasets.splits import check_dataset_layout, split_inputs\n"
                           "from mutdet_core.runs import plan\n"
                           "from mutdet_core.synthetic.stage import check_synthetic_classes"),
    "dag-time checks": DAG_TIME.format(configs=CONFIGS),
    "cli parser": "from mutdet_core.cli import build_parser\nbuild_parser()",
    "cli check-config": ("from mutdet_core.cli import main\n"
                         "assert main(['check-config', 'config.yaml']) == 0"),
    "cli info": "from mutdet_core.cli import _cmd_info\nfrom mutdet_core.tiling.store import TileStore",
    "table5_small": "from mutdet_core.tables import per_seed_results, render_small_scale_table5, small_scale_results",
    "paper_table": "from mutdet_core.tables.results import write_paper_table",
    "pseudo_assign": "from mutdet_core.pseudo_labels import assign_pseudo_labels",
    "training_curves": "from mutdet_core.reporting import plot_training_curves",
    "ap_curves": "from mutdet_core.reporting import write_ap_curves",
    "evaluate": ("from mutdet_core.runs.evaluate import evaluate_split_run\n"
                 "from mutdet_core.evaluation import evaluate_detections, write_reports\n"
                 "from mutdet_core.datasets.splits import load_split, resolve_classes"),
    "light parts of heavy packages": ("from mutdet_core.engine import TrainConfig, decay_epochs_for\n"
                                      "from mutdet_core.pretraining import METHODS, check_method_config\n"
                                      "from mutdet_core.models.detector_config import CONFIG_KEYS\n"
                                      "from mutdet_core.models.lite_weights import LITE_VARIANTS, lite_weights_file\n"
                                      "from mutdet_core.pseudo_labels import EmbeddingParams, SamParams, "
                                      "GraphSegmentationParams, CheckpointError\n"
                                      "from mutdet_core.runs import DataConfig"),
}


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("name", sorted(LIGHT_ENTRIES))
def test_light_entry_points_import_no_heavy_module(name):
    code = "import mutdet_core, pathlib\n"
    code += f"assert pathlib.Path(mutdet_core.__file__).parent == pathlib.Path({str(REPO_ROOT / 'mutdet_core')!r})\n"
    result = _run(code + LIGHT_ENTRIES[name] + "\n" + CHECK_HEAVY)
    assert result.returncode == 0, result.stderr[-3000:]


def test_mutdet_help_lists_every_subcommand_without_heavy_modules():
    from mutdet_core.cli import build_parser

    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    commands = sorted(subparsers.choices)
    assert {"check-config", "tile", "info", "verify", "inspect", "evaluate", "merge"} <= set(commands)
    code = ("import sys\nfrom mutdet_core.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as stop:\n    assert stop.code == 0, stop.code\n"
            + CHECK_HEAVY)
    result = _run(code)
    assert result.returncode == 0, result.stderr[-3000:]
    listed = result.stdout.split("positional arguments:")[-1]
    missing = [c for c in commands if c not in listed]
    assert not missing, f"mutdet --help does not list {missing}:\n{result.stdout}"


@pytest.mark.parametrize("package", ["data", "datasets", "engine", "evaluation", "geometry", "pretraining",
                                     "pseudo_labels", "reporting", "runs", "synthetic", "tables", "tiling"])
def test_lazy_package_exports_resolve(package):
    """Every name of a package's ``__all__`` still imports, and is the object of the module it comes from."""
    module = importlib.import_module(f"mutdet_core.{package}")
    exports = module._EXPORTS
    assert set(exports) <= set(module.__all__)
    assert all(name in vars(module) for name in set(module.__all__) - set(exports))  # defined in __init__
    for name, source in exports.items():
        value = getattr(module, name)
        assert value is getattr(importlib.import_module(source, module.__name__), name)
        assert name in dir(module)
    with pytest.raises(AttributeError):
        module.no_such_name  # noqa: B018


def _keywords(func, given):
    return sorted(n for n, p in inspect.signature(func).parameters.items()
                  if n not in given and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def test_light_key_lists_equal_the_signatures_they_stand_for():
    """config.pseudo_label_block_problems checks the clustering / inspect blocks against key lists in the
    torch-free params module; they must stay the keywords of fit_clusters and inspect_store."""
    from mutdet_core.pseudo_labels.clustering import fit_clusters
    from mutdet_core.pseudo_labels.inspection import inspect_store
    from mutdet_core.pseudo_labels.params import CLUSTERING_KEYS, INSPECT_KEYS

    assert sorted(CLUSTERING_KEYS) == _keywords(fit_clusters, {"embedding_stores", "out_path", "overwrite"})
    assert sorted(INSPECT_KEYS) == _keywords(inspect_store, {"path", "out_dir"})


def test_moved_definitions_are_reexported_unchanged():
    """The torch-free homes and the modules that used to define the names hand out the same objects."""
    from mutdet_core.engine import optim, schedule
    from mutdet_core.engine import defaults
    from mutdet_core.models import detector, detector_config, efficientnet_lite, lite_weights
    from mutdet_core.pretraining import build, contrastive_alignment, method_config, mutdet, mutdet_criterion
    from mutdet_core.pseudo_labels import embeddings, graph_segmentation, params, sam, stores

    pairs = [(optim.DEFAULT_LR_MULT_KEYS, defaults.DEFAULT_LR_MULT_KEYS),
             (schedule.decay_epochs_for, defaults.decay_epochs_for),
             (detector.CONFIG_KEYS, detector_config.CONFIG_KEYS),
             (efficientnet_lite.LITE_VARIANTS, lite_weights.LITE_VARIANTS),
             (efficientnet_lite.WeightPackageMissing, lite_weights.WeightPackageMissing),
             (efficientnet_lite.lite_weights_file, lite_weights.lite_weights_file),
             (build.check_method_config, method_config.check_method_config),
             (build.pretraining_detector_config, method_config.pretraining_detector_config),
             (mutdet.SWITCHES, method_config.SWITCHES), (mutdet.CALIBRATIONS, method_config.CALIBRATIONS),
             (contrastive_alignment.DN_ALIGNMENTS, method_config.DN_ALIGNMENTS),
             (contrastive_alignment.EMBED_LOSSES, method_config.EMBED_LOSSES),
             (mutdet_criterion.ENCODER_ALIGNMENTS, method_config.ENCODER_ALIGNMENTS),
             (graph_segmentation.GraphSegmentationParams, params.GraphSegmentationParams),
             (sam.SamParams, params.SamParams), (sam.CheckpointError, params.CheckpointError),
             (embeddings.EmbeddingParams, params.EmbeddingParams), (embeddings.open_embeddings, stores.open_embeddings),
             (embeddings.FORMAT, stores.EMBEDDINGS_FORMAT)]
    for old_home, new_home in pairs:
        assert old_home is new_home
