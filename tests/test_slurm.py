"""The SLURM profile (profiles/slurm) and a real single-node SLURM cluster running the workflow through the
SLURM executor plugin: pseudo-label jobs and a 2-GPU fine-tuning job (2 DDP processes, gloo on CPU, fake
GPUs) submitted with sbatch, the light rules run in the Snakemake process.

The cluster is started by scripts/slurm_local_cluster.sh (Debian's SLURM packages, munge, four fake GPUs);
only the daemons that script started are stopped afterwards. It needs root (apt, /etc/slurm, mknod): that
test skips with the reason otherwise. The profile checks (local rules, dry run) run everywhere.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.snakemake
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
PLACEHOLDER_WARNING = "slurm_partition is 'debug', the placeholder of profiles/slurm/config.yaml"
# light rules: tables and pictures from small files, and the synthetic data set; run where Snakemake runs
LOCAL_RULES = {"all", "generate_synthetic", "table5_small", "training_curves", "ap_curves",
               *(f"table{n}" for n in range(1, 10))}

# A detector small enough that two DDP processes train it in seconds on one shared CPU core each.
TINY_MODEL = {"variant": "ars_detr", "backbone": {"name": "tiny", "width": 8}, "d_model": 32, "n_heads": 2,
              "ffn_dim": 64, "num_encoder_layers": 1, "num_decoder_layers": 1, "num_queries": 10,
              "num_dn_queries": 4, "dropout": 0.0}
FINETUNED = "results/finetune/synthetic/tiny/none/frac1/e2/seed1"


def run_env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1")


def parse_workflow(repo_root: Path, workdir: Path, partition: str, warnings: list[str]):
    """The workflow as Snakemake parses it with default resource slurm_partition=<partition>; what Snakemake
    logs at warning level while parsing is appended to ``warnings``."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    class Collect(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                warnings.append(record.getMessage())

    handler = Collect()
    logging.getLogger("snakemake").addHandler(handler)
    try:
        with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
            return api.workflow(resource_settings=ResourceSettings(default_resources={"slurm_partition": partition}),
                                config_settings=ConfigSettings(configfiles=[repo_root / "config.yaml"]),
                                snakefile=repo_root / "Snakefile", workdir=workdir)._workflow
    finally:
        logging.getLogger("snakemake").removeHandler(handler)


def test_light_rules_are_local_and_the_placeholder_partition_warns(repo_root, tmp_path):
    """Tables, pictures and `all` are localrules (no 2 GB cluster job for a table); every rule that reads a
    whole data set, trains or predicts is submitted. The profile's placeholder partition warns while the
    workflow is parsed (dry runs included); a real partition name does not."""
    warnings = []
    workflow = parse_workflow(repo_root, tmp_path, "debug", warnings)
    rules = {rule.name for rule in workflow.rules}
    # workflow.is_local() is True for every rule of a local run; the localrules set is what a cluster sees
    local = {name for name in rules if name in workflow._localrules}
    assert local == LOCAL_RULES
    assert {"tile", "pseudo_masks", "pseudo_embeddings", "pretrain", "finetune", "predict", "evaluate"} <= rules - local
    # every rule that runs code names the environment the profile's `software-deployment-method: conda` builds
    envs = {rule.name: rule.conda_env for rule in workflow.rules if rule.name != "all"}
    assert all(str(env).endswith("envs/mutdet.yaml") for env in envs.values()), envs
    assert any(PLACEHOLDER_WARNING in w for w in warnings), warnings
    warnings.clear()
    parse_workflow(repo_root, tmp_path, "gpu_a100", warnings)
    assert not any(PLACEHOLDER_WARNING in w for w in warnings), warnings


def test_profile_dry_run_warns_and_asks_for_conda(repo_root, tmp_path):
    """The repository's profile as a user runs it (only the config swapped for the embedded default)."""
    profile = yaml.safe_load((repo_root / "profiles/slurm/config.yaml").read_text())
    assert profile["software-deployment-method"] == "conda"
    assert profile["default-resources"]["slurm_partition"] == "debug"
    cmd = [SNAKEMAKE, "-n", "--snakefile", str(repo_root / "Snakefile"), "--directory", str(tmp_path),
           "--profile", str(repo_root / "profiles/slurm"), "--configfile", str(repo_root / "config.yaml")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=run_env())
    out = proc.stdout + proc.stderr
    assert PLACEHOLDER_WARNING in out, out[-3000:]
    if shutil.which("conda") is None:
        # every rule asks for envs/mutdet.yaml: without conda, Snakemake stops while building the DAG
        assert proc.returncode != 0 and "Error running conda info" in out, out[-3000:]
    else:
        assert proc.returncode == 0, out[-3000:]
        assert "slurm_partition=debug" in out


@pytest.fixture(scope="module")
def slurm_cluster(repo_root):
    if os.geteuid() != 0:
        pytest.skip("starting a SLURM cluster needs root (apt-get, /etc/slurm, mknod)")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("no SLURM packages and no apt-get to install them")
    script = repo_root / "scripts/slurm_local_cluster.sh"
    env = dict(os.environ, SLURM_DIR="/tmp/mutdet-slurm-tests")
    start = subprocess.run([str(script), "start"], capture_output=True, text=True, timeout=600, env=env)
    if start.returncode != 0:
        pytest.fail(f"SLURM did not start:\n{start.stdout}\n{start.stderr}")
    yield
    subprocess.run([str(script), "stop"], capture_output=True, text=True, timeout=120, env=env)


def tiny_config(path: Path) -> Path:
    """Two small synthetic images: pseudo-labels of the train split, and one fine-tuning run on it."""
    config = {
        "synthetic": {"seed": 5, "images": {"train": 2}, "min_side": 400, "max_side": 520},
        "datasets": {"synthetic": {"source": "synthetic", "classes": "synthetic", "splits": ["train"]}},
        "pseudo_labels": {
            "pretrain_sets": {"syn": ["synthetic/train"]},
            "masks": {"method": "classical", "device": "cpu", "classical": {"num_scales": 2, "max_masks": 30}},
            "embeddings": {"arch": "resnet18", "crop_size": 32, "input_size": 256, "batch_size": 64},
            "device": "cpu",
            "clustering": {"pca_dim": 8, "num_clusters": 4, "too_few_boxes": "adapt"},
        },
        "models": {"tiny": TINY_MODEL},
        "finetune": {"datasets": {"synthetic": {"train": "train", "test": "train"}}, "inits": ["none"],
                     "fractions": [1.0], "seeds": [1], "data": {"resize": 128},
                     # 2 images over 2 processes at batch 1: one iteration per process and epoch
                     "train": {"epochs": 2, "batch_size": 1, "warmup_iters": 1, "num_workers": 0,
                               "tensorboard": False, "log_interval": 1}},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def slurm_profile_for_tests(repo_root: Path, tmp_path: Path) -> Path:
    """The repository's profile scaled down to this 2-core node: same executor, partition placeholder, GPU
    declarations (finetune gpu: 2); fewer threads and less memory, and an account, which this cluster
    accepts unchecked (no slurmdbd: sacctmgr/sshare list nothing)."""
    profile = yaml.safe_load((repo_root / "profiles/slurm/config.yaml").read_text())
    profile.pop("configfile")
    # conda is not installed here and the envs could not be built offline: the jobs use this venv (the
    # plugin submits with the venv's absolute python, the node shares the filesystem)
    profile.pop("software-deployment-method")
    profile["jobs"] = 2
    profile["slurm-init-seconds-before-status-checks"] = 1
    profile["default-resources"]["slurm_account"] = "mutdet_ci"
    profile["set-threads"] = {rule: 1 for rule in profile["set-threads"]}
    for resources in profile["set-resources"].values():
        resources["mem_mb"] = 1500
        if "cpus_per_gpu" in resources:
            resources["cpus_per_gpu"] = 1  # fake GPUs (gres gpu:fake:4) on a 2-core node
    # one CPU for the 2-GPU training job, so a 1-GPU pseudo-label job runs beside it (cpus_per_task takes
    # precedence over cpus_per_gpu in the plugin)
    profile["set-resources"]["finetune"]["cpus_per_task"] = 1
    assert profile["set-resources"]["finetune"]["gpu"] == 2
    profile_dir = tmp_path / "profile"
    profile_dir.mkdir()
    (profile_dir / "config.yaml").write_text(yaml.safe_dump(profile))
    return profile_dir


def cluster_jobs(workdir: Path) -> dict[str, dict]:
    """The last SLURM job of each rule (and wildcards) submitted from workdir, by the plugin's comment
    ("rule_<name>" or "rule_<name>_wildcards_<values>"); a retried job counts by its last attempt.
    Finished jobs stay visible to scontrol for MinJobAge = 600 s."""
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=True).stdout
    jobs = [dict(kv.split("=", 1) for kv in line.split() if "=" in kv) for line in out.splitlines() if line.strip()]
    jobs = [j for j in jobs if j.get("WorkDir") == str(workdir) and j.get("Comment", "").startswith("rule_")]
    last = {}
    for job in sorted(jobs, key=lambda j: int(j["JobId"])):
        last[job["Comment"]] = job
    return last


def test_workflow_and_a_ddp_training_job_run_through_sbatch(slurm_cluster, repo_root, tmp_path):
    cfg = tiny_config(tmp_path / "tiny.yaml")
    profile_dir = slurm_profile_for_tests(repo_root, tmp_path)
    targets = ["results/pseudo_labels/syn/synthetic/train/pseudo_labels.zarr/zarr.json", f"{FINETUNED}/epoch_2.pth",
               "results/report/training_curves"]
    cmd = [SNAKEMAKE, "--snakefile", str(repo_root / "Snakefile"), "--directory", str(tmp_path),
           "--profile", str(profile_dir), *targets, "--configfile", str(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=repo_root, env=run_env())
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert PLACEHOLDER_WARNING in out  # this cluster's partition happens to be called debug

    jobs = cluster_jobs(tmp_path)
    rules = {comment.split("_wildcards_")[0] for comment in jobs}
    assert rules == {"rule_tile", "rule_pseudo_masks", "rule_pseudo_boxes", "rule_pseudo_embeddings",
                     "rule_pseudo_clusters", "rule_pseudo_assign", "rule_finetune"}, sorted(rules)
    assert all(j["JobState"] == "COMPLETED" for j in jobs.values()), {c: j["JobState"] for c, j in jobs.items()}
    assert all(j["Partition"] == "debug" and j["Account"] == "mutdet_ci" for j in jobs.values())
    by_rule = {comment.split("_wildcards_")[0]: j for comment, j in jobs.items()}
    # GPU rules asked SLURM for (fake) GPUs, CPU rules did not; the training job for two
    assert by_rule["rule_finetune"].get("TresPerJob", "").endswith("gpu:2"), by_rule["rule_finetune"]
    assert "gpu" in by_rule["rule_pseudo_masks"].get("TresPerJob", ""), by_rule["rule_pseudo_masks"]
    assert "gpu" not in by_rule["rule_tile"].get("TresPerJob", "")
    # the light rules ran in the Snakemake process: no SLURM job, no SLURM log, but their outputs
    logs = {p.name for p in (tmp_path / ".snakemake/slurm_logs").iterdir()}
    assert "rule_training_curves" not in logs and "rule_generate_synthetic" not in logs and "rule_finetune" in logs
    assert any((tmp_path / "results/report/training_curves").glob("*.png"))
    assert (tmp_path / "results/pseudo_labels/syn/synthetic/train/pseudo_labels.zarr").is_dir()

    # the training job ran 2 DDP processes in its one SLURM task, and its checkpoint loads into the detector
    summary = json.loads((tmp_path / FINETUNED / "finetune.json").read_text())
    assert summary["world_size"] == 2, summary
    import torch

    from mutdet_core.models.detector import build_detector
    from mutdet_core.runs.settings import with_num_classes

    state = torch.load(tmp_path / FINETUNED / "epoch_2.pth", map_location="cpu", weights_only=True)
    meta = state["meta"]
    model, _, _ = build_detector(with_num_classes(meta["detector"], len(meta["classes"])))
    model.load_state_dict(state["model"])  # strict: every key and shape of the detector
    assert not any(k.startswith("module.") for k in state["model"])  # the DDP wrapper's prefix is not saved
    trained = {k: v for k, v in state["model"].items() if v.is_floating_point()}
    assert all(torch.isfinite(v).all() for v in trained.values())
