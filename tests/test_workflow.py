"""Real Snakemake runs of the workflow on tiny configs (the embedded synthetic data)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mutdet_core.tiling import TileStore

pytestmark = pytest.mark.snakemake
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def run_snakemake(repo_root, workdir, config, *args, check=True):
    # targets and flags first: --configfile takes several values and would swallow them
    cmd = [SNAKEMAKE, "--snakefile", str(repo_root / "Snakefile"), "--directory", str(workdir), "--cores", "2",
           *args, "--configfile", str(config)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def write_config(path: Path, **overrides) -> Path:
    config = {
        "synthetic": {"seed": 3, "images": {"train": 2, "val": 1}, "min_side": 500, "max_side": 900},
        "datasets": {"synthetic": {"source": "synthetic", "classes": "synthetic", "splits": ["train", "val"]}},
    }
    config.update(overrides)
    path.write_text(yaml.safe_dump(config))
    return path


def test_tiny_pipeline_runs_and_rerun_does_nothing(repo_root, tmp_path):
    cfg = write_config(tmp_path / "tiny.yaml")
    run_snakemake(repo_root, tmp_path, cfg, "results/tiles/synthetic/train.zarr",
                  "results/tiles/synthetic/val.zarr")
    store = TileStore.open(tmp_path / "results/tiles/synthetic/train.zarr")
    assert len(store) >= 2 and store.attrs["dataset"] == "synthetic"
    assert (tmp_path / "results/logs/tile/synthetic/train.log").read_text().count("done in") == 1
    assert (tmp_path / "results/benchmarks/tile/synthetic/train.tsv").is_file()
    again = run_snakemake(repo_root, tmp_path, cfg, "-n", "results/tiles/synthetic/train.zarr",
                          "results/tiles/synthetic/val.zarr")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_bad_config_stops_before_any_job(repo_root, tmp_path):
    cfg = write_config(tmp_path / "bad.yaml", datasets={"mine": {"source": "dota", "root": str(tmp_path / "nope")}})
    proc = run_snakemake(repo_root, tmp_path, cfg, "-n", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "root" in out and "does not exist" in out
    cfg = write_config(tmp_path / "bad2.yaml", datasets={"mine": {"source": "imagenet"}})
    proc = run_snakemake(repo_root, tmp_path, cfg, "-n", check=False)
    assert proc.returncode != 0 and "datasets/mine/source" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_lint_is_clean(repo_root):
    proc = subprocess.run([SNAKEMAKE, "--lint", "--snakefile", str(repo_root / "Snakefile")], cwd=repo_root,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr
