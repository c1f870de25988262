"""A real single-node SLURM cluster: the workflow submitted through the SLURM executor plugin.

The cluster is started by scripts/slurm_local_cluster.sh (Debian's SLURM packages, munge, fake GPUs);
only the daemons that script started are stopped afterwards. Needs root (apt, /etc/slurm, mknod): the
tests skip with the reason otherwise.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.snakemake
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


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


def test_workflow_runs_through_sbatch(slurm_cluster, repo_root, tmp_path):
    config = {
        "synthetic": {"seed": 5, "images": {"train": 1}, "min_side": 520, "max_side": 700},
        "datasets": {"synthetic": {"source": "synthetic", "classes": "synthetic", "splits": ["train"]}},
        "pseudo_labels": {
            "pretrain_sets": {"syn": ["synthetic/train"]},
            "masks": {"method": "classical", "device": "cpu", "classical": {"num_scales": 2, "max_masks": 40}},
            "embeddings": {"arch": "resnet18", "crop_size": 32, "input_size": 512, "batch_size": 64},
            "device": "cpu",
            "clustering": {"pca_dim": 8, "num_clusters": 4, "too_few_boxes": "adapt"},
            "inspect": {"num_tiles": 1, "num_clusters_shown": 2, "crops_per_cluster": 4},
        },
    }
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(config))
    # the repository's profile, scaled down to this machine: same executor, same GPU declarations
    profile = yaml.safe_load((repo_root / "profiles/slurm/config.yaml").read_text())
    profile.pop("configfile")
    profile["jobs"] = 2
    profile["slurm-init-seconds-before-status-checks"] = 2
    profile["set-threads"] = {rule: 1 for rule in profile["set-threads"]}
    for resources in profile["set-resources"].values():
        resources["mem_mb"] = 2000
        if "cpus_per_gpu" in resources:
            resources["cpus_per_gpu"] = 1  # fake GPUs (gres gpu:fake:2) on a 2-core node
    profile_dir = tmp_path / "profile"
    profile_dir.mkdir()
    (profile_dir / "config.yaml").write_text(yaml.safe_dump(profile))
    cmd = [SNAKEMAKE, "--snakefile", str(repo_root / "Snakefile"), "--directory", str(tmp_path),
           "--profile", str(profile_dir), "--configfile", str(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, cwd=repo_root)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    logs = tmp_path / ".snakemake/slurm_logs"
    rules = {p.name for p in logs.iterdir()}
    assert {"rule_tile", "rule_pseudo_masks", "rule_pseudo_embeddings", "rule_pseudo_clusters"} <= rules, rules
    assert "sbatch" in out or "SLURM run ID" in out or "Job " in out
    # every job SLURM ran is COMPLETED (finished jobs stay visible for MinJobAge = 600 s)
    jobs = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=True).stdout
    jobs = [dict(kv.split("=", 1) for kv in line.split() if "=" in kv) for line in jobs.splitlines() if line.strip()]
    # the plugin's comment is "rule_<name>" or "rule_<name>_wildcards_<values>"
    by_rule = {j.get("Comment", "").split("_wildcards_")[0]: j for j in jobs}
    assert {"rule_tile", "rule_pseudo_masks", "rule_pseudo_clusters"} <= set(by_rule), sorted(by_rule)
    assert all(j["JobState"] == "COMPLETED" for j in jobs if j.get("Comment", "").startswith("rule_")), jobs
    # the GPU rules asked SLURM for a (fake) GPU; CPU rules did not
    assert "gpu" in by_rule["rule_pseudo_masks"].get("TresPerJob", ""), by_rule["rule_pseudo_masks"]
    assert "gpu" not in by_rule["rule_tile"].get("TresPerJob", "")
    assert (tmp_path / "results/pseudo_labels/syn/synthetic/train/pseudo_labels.zarr").is_dir()
