"""Real Snakemake runs of the workflow on tiny configs (the embedded synthetic data)."""
from __future__ import annotations

import json
import os
import re
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
    # a store's target is its zarr.json (rules/common.smk store()): no Snakemake file inside the store
    run_snakemake(repo_root, tmp_path, cfg, "results/tiles/synthetic/train.zarr/zarr.json",
                  "results/tiles/synthetic/val.zarr/zarr.json")
    store = TileStore.open(tmp_path / "results/tiles/synthetic/train.zarr")
    assert not list((tmp_path / "results/tiles").rglob(".snakemake_timestamp"))
    assert len(store) >= 2 and store.attrs["dataset"] == "synthetic"
    assert (tmp_path / "results/logs/tile/synthetic/train.log").read_text().count("done in") == 1
    assert (tmp_path / "results/benchmarks/tile/synthetic/train.tsv").is_file()
    again = run_snakemake(repo_root, tmp_path, cfg, "-n", "results/tiles/synthetic/train.zarr/zarr.json",
                          "results/tiles/synthetic/val.zarr/zarr.json")
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


# The whole chain on a few tiny images: pseudo-labels -> pre-training -> fine-tuning -> prediction ->
# evaluation -> table. Small enough for CI; a real run of every rule, not a dry run.
TINY_MODEL = {"variant": "ars_detr", "backbone": {"name": "tiny", "width": 8}, "d_model": 32, "n_heads": 2,
              "ffn_dim": 64, "num_encoder_layers": 1, "num_decoder_layers": 1, "num_queries": 10,
              "num_dn_queries": 4, "dropout": 0.0}
TINY_TRAIN = {"epochs": 2, "batch_size": 2, "warmup_iters": 2, "num_workers": 0, "tensorboard": False,
              "log_interval": 5}


def tiny_chain_config(path: Path) -> Path:
    return write_config(
        path,
        synthetic={"seed": 4, "images": {"train": 3, "test": 1}, "min_side": 400, "max_side": 700},
        datasets={"synthetic": {"source": "synthetic", "classes": "synthetic", "splits": ["train", "test"]}},
        pseudo_labels={
            "pretrain_sets": {"syn": ["synthetic/train"]},
            "masks": {"method": "classical", "device": "cpu", "classical": {"num_scales": 2, "max_masks": 30}},
            "embeddings": {"arch": "resnet18", "crop_size": 32, "input_size": 256, "batch_size": 64},
            "device": "cpu",
            "clustering": {"pca_dim": 8, "num_clusters": 4, "too_few_boxes": "adapt"},
            "inspect": {"num_tiles": 1, "num_clusters_shown": 2, "crops_per_cluster": 4},
        },
        models={"tiny": TINY_MODEL},
        pretrain={"methods": {"mutdet": {"method": "mutdet"}}, "train": dict(TINY_TRAIN, epochs=1),
                  "data": {"resize": 256, "max_objects": 20}},
        finetune={"datasets": {"synthetic": {"train": "train", "test": "test"}}, "inits": ["none", "mutdet"],
                  "fractions": [0.5, 1.0], "seeds": [1], "train": dict(TINY_TRAIN, checkpoint_epochs=[1]),
                  "data": {"resize": 256}, "score_thr": 0.0},
        tables=["table5_small"],
    )


def test_whole_chain_to_the_table(repo_root, tmp_path):
    cfg = tiny_chain_config(tmp_path / "chain.yaml")
    # two DDP processes per fine-tuning job (gloo on CPU), as a 2-GPU SLURM job would start them
    run_snakemake(repo_root, tmp_path, cfg, "--set-resources", "finetune:gpu=2")
    results = tmp_path / "results"
    pretrained = results / "pretrain/syn/tiny/mutdet"
    assert (pretrained / "epoch_1.pth").is_file() and (pretrained / "pretrain.json").is_file()
    run = results / "finetune/synthetic/tiny/mutdet.syn/frac0.5/e2/seed1"
    summary = json.loads((run / "finetune.json").read_text())
    assert summary["init_checkpoint"] == "results/pretrain/syn/tiny/mutdet/epoch_1.pth"
    assert set(summary["checkpoints"]) == {"1", "2"}  # checkpoint_epochs [1] and the last
    assert summary["world_size"] == 2
    assert "training 2 epochs" in (results / "logs/finetune/synthetic/tiny/mutdet.syn/frac0.5/e2/seed1.log").read_text()
    assert (run / "transfer.json").is_file() and (run / "image_ids.txt").is_file()
    # half of the 3 training images, whole images
    assert len((run / "image_ids.txt").read_text().split()) in (1, 2)
    assert not (results / "finetune/synthetic/tiny/none/frac0.5/e2/seed1/transfer.json").exists()
    for init in ("none", "mutdet.syn"):
        for frac in ("0.5", "1"):
            evaluation = json.loads((results / f"evaluate/synthetic/tiny/{init}/frac{frac}/e2/seed1/epoch_2.json")
                                    .read_text())
            assert set(evaluation["mAP"]) >= {"AP50", "AP75", "AP50:95"}
            assert evaluation["num_images"] == 1
    merged = results / "predict/synthetic/tiny/none/frac1/e2/seed1/epoch_2"
    assert (merged / "merged.zip").is_file() and any((merged / "merged").glob("Task1_*.txt"))
    table = (results / "tables/table5_small_synthetic.md").read_text()
    assert "MutDet" in table and "AP50 / 50%" in table and "AP50 / 100%" in table
    tidy = (results / "tables/table5_small_synthetic.csv").read_text().splitlines()
    assert tidy[0].startswith("method,fraction,metric,mean") and len(tidy) == 1 + 2 * 2 * 2
    assert (results / "pseudo_labels/syn/synthetic/train/inspect").is_dir()
    # every store holds Zarr nodes only: no .snakemake_timestamp (stores are tracked by their zarr.json)
    stores = list(results.rglob("*.zarr"))
    assert len(stores) >= 7 and not [p for s in stores for p in s.rglob(".snakemake_timestamp")]
    # every rule left a log and a benchmark
    for rule in ("pretrain", "finetune", "predict", "evaluate", "pseudo_clusters", "tables"):
        assert any((results / "logs" / rule).rglob("*.log")), rule
        assert any((results / "benchmarks" / rule).rglob("*.tsv")), rule

    again = run_snakemake(repo_root, tmp_path, cfg, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    # one evaluation removed: exactly that job reruns, then the table (its consumer)
    (results / "evaluate/synthetic/tiny/none/frac1/e2/seed1/epoch_2.json").unlink()
    plan = run_snakemake(repo_root, tmp_path, cfg, "-n")
    counts = job_counts(plan.stdout)
    assert counts == {"evaluate": 1, "table5_small": 1, "all": 1, "total": 3}, counts

    # a changed pre-training setting: Snakemake reruns the pre-training and a fine-tuning run started from it;
    # both replace their stale run folders (saying so) instead of refusing to mix two runs
    changed = yaml.safe_load(cfg.read_text())
    changed["pretrain"]["train"]["lr"] = 5e-5
    cfg_changed = tmp_path / "chain_changed.yaml"
    cfg_changed.write_text(yaml.safe_dump(changed))
    old_pretrain = json.loads((pretrained / "pretrain.json").read_text())
    run_snakemake(repo_root, tmp_path, cfg_changed, str(run.relative_to(tmp_path) / "epoch_2.pth"))
    for log in (results / "logs/pretrain/syn/tiny/mutdet.log",
                results / "logs/finetune/synthetic/tiny/mutdet.syn/frac0.5/e2/seed1.log"):
        assert "removing it and starting afresh" in log.read_text(), log
    assert json.loads((pretrained / "pretrain.json").read_text()) != old_pretrain


def job_counts(dry_run_output: str) -> dict:
    """The 'Job stats' table of a dry run as {rule: count}."""
    lines = dry_run_output.split("Job stats:", 1)[1].splitlines()
    counts = {}
    for line in lines[3:]:
        match = re.fullmatch(r"(\S+)\s+(\d+)", line.strip())
        if not match:
            break
        counts[match[1]] = int(match[2])
    return counts


def test_mini_config_plans_the_small_scale_reproduction(repo_root, tmp_path):
    """configs/mini.yaml version 4 (README, issue 14): 2 + 2 oracle pre-training runs; 3 inits x 2 fractions
    x 3 seeds plus the 2 oracle inits at 10 % only; each run evaluated at 3 epochs (the AP curves)."""
    proc = subprocess.run([SNAKEMAKE, "-n", "--directory", str(tmp_path), "--configfile",
                           str(repo_root / "configs/mini.yaml")], cwd=repo_root, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    rules = ("pretrain", "finetune", "predict", "evaluate", "table5_small", "ap_curves", "pseudo_masks",
             "pseudo_boxes")
    assert {k: counts.get(k) for k in rules} == {
        "pretrain": 4, "finetune": 24, "predict": 72, "evaluate": 72, "table5_small": 1, "ap_curves": 1,
        "pseudo_masks": 1, "pseudo_boxes": 2}  # the oracle's boxes come from the labels, not from masks
    assert "finetune/synthetic/lite0_ars_detr/mutdet.synthetic_oracle/frac0.1/e60/seed3/epoch_60.pth" in proc.stdout
    assert "mutdet.synthetic_oracle/frac1/" not in proc.stdout
    assert "none/frac1/e12/seed1/epoch_4.pth" not in proc.stdout  # intermediate checkpoints are not targets


# The slurm profile deploys envs/mutdet.yaml with conda, and Snakemake asks `conda info` even in a dry run;
# this machine has no conda. `--sdm env-modules` replaces the profile's method (no rule has an envmodules
# directive, so nothing is loaded), as README says for a dry run on a machine without conda.
NO_CONDA = ["--sdm", "env-modules"]


def test_paper_config_plans_every_table(repo_root, tmp_path):
    """`snakemake --profile slurm -n` on the paper config (data and checkpoints faked by placeholder images
    and files, non-empty as the DAG-time checks ask): every table's jobs are planned, as many per rule as the
    experiment matrix says."""
    paper = yaml.safe_load((repo_root / "configs/paper.yaml").read_text())
    data, checkpoints = tmp_path / "data", tmp_path / "checkpoints"
    for name, entry in paper["datasets"].items():
        root = data / entry["root"]
        for split in entry["splits"]:
            if entry["source"] == "dior_r":  # the official layout: one image folder for train and val
                images = root / ("JPEGImages-test" if split == "test" else "JPEGImages-trainval")
            else:
                images = root / split / ("JPEGImages" if entry["source"] == "hrrsd" else "images")
            images.mkdir(parents=True, exist_ok=True)
            (images / "placeholder.png").write_bytes(b"\x89PNG placeholder")
        if entry["source"] == "dior_r":
            (root / "Annotations" / "Oriented Bounding Boxes").mkdir(parents=True)
            (root / "ImageSets" / "Main").mkdir(parents=True)
    checkpoints.mkdir()
    for weights in ("sam_vit_h_4b8939.pth", "resnet50-11ad3fa6.pth", "swin_tiny_patch4_window7_224.pth"):
        (checkpoints / weights).write_bytes(b"placeholder weights")
    paper.update(data_root=str(data), checkpoint_root=str(checkpoints))
    cfg = tmp_path / "paper.yaml"
    cfg.write_text(yaml.safe_dump(paper))
    proc = subprocess.run([SNAKEMAKE, "--profile", "slurm", *NO_CONDA, "-n", "--directory", str(tmp_path),
                           "--configfile", str(cfg)], cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    counts = job_counts(proc.stdout)

    from mutdet_core.tables import evaluations_for_tables, pretrain_runs_for_tables, runs_for_tables

    tables = range(1, 10)
    n_eval = sum(len(epochs) for epochs in evaluations_for_tables(tables).values())
    assert counts["pretrain"] == len(pretrain_runs_for_tables(tables)) == 25
    assert counts["finetune"] == len(runs_for_tables(tables)) == 73
    assert counts["predict"] == counts["evaluate"] == n_eval
    assert all(counts[f"table{n}"] == 1 for n in tables)
    splits = sum(len(e["splits"]) for e in paper["datasets"].values())
    assert counts["tile"] == splits
    # masks/boxes/embeddings once per split (DOTA train is in both sets), clustering once per set
    assert counts["pseudo_masks"] == counts["pseudo_embeddings"] == 5
    assert counts["pseudo_clusters"] == 2 and counts["pseudo_assign"] == 6
    assert "sbatch" not in proc.stdout


def test_paper_profile_as_typed_reads_the_paper_config(repo_root):
    """From the repository root, `snakemake --profile slurm` selects configs/paper.yaml: with its
    placeholder paths it stops at DAG-building time naming the missing data, before any submission."""
    proc = subprocess.run([SNAKEMAKE, "--profile", "slurm", *NO_CONDA, "-n"], cwd=repo_root, capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "/data/remote_sensing/DIOR-R" in out or "/data/remote_sensing" in out, out[-3000:]


def test_slurm_profile_settings_reach_the_jobs(repo_root):
    """Nothing local overrides the cluster profile: its threads and GPU counts are what a job gets (a
    profiles/default would be loaded as the workflow profile and cap every job at its `cores`)."""
    # --forceall: every job is planned whatever a local results/ folder already holds
    proc = subprocess.run([SNAKEMAKE, "--profile", "slurm", *NO_CONDA, "-n", "--forceall", "--configfile",
                           "config.yaml"],
                          cwd=repo_root, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    profile = yaml.safe_load((repo_root / "profiles/slurm/config.yaml").read_text())
    jobs = [block for block in out.split("\nrule ")[1:] if block.startswith("pretrain:")]
    assert jobs, out[-3000:]
    for block in jobs:
        assert f"threads: {profile['set-threads']['pretrain']}\n" in block, block
        assert f"gpu={profile['set-resources']['pretrain']['gpu']}" in block, block


@pytest.mark.parametrize("change, message", [
    ({"finetune": {"inits": ["none", "mutdett"]}}, "'mutdett' is neither 'none' nor a run in pretrain.methods"),
    ({"pretrain": {"methods": {"mutdet": {"method": "mutdett"}}}}, "pretrain.methods.mutdet"),
    ({"model": {"variant": "ars_detr", "backbone_name": "r50"}}, "unknown detector keys ['backbone_name']"),
    ({"finetune": {"datasets": {"dior": {"train": "trainval"}}}}, "'dior' is not a configured dataset"),
    ({"models": {"tiny": {"backbone": {"name": "resnet50", "weights": "/nowhere/r50.pth"}}}},
     "/nowhere/r50.pth does not exist"),
])
def test_bad_run_config_stops_at_dag_time(repo_root, tmp_path, change, message):
    cfg = yaml.safe_load(tiny_chain_config(tmp_path / "chain.yaml").read_text())
    for key, value in change.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(cfg.get(key), dict) else value
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(repo_root, tmp_path, bad, "-n", check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
    assert not (tmp_path / "results").exists()


def test_own_imagery_example_plans_pseudo_labels_only(repo_root):
    """configs/own_imagery.yaml (README): a flat images/ + labelTxt/ folder as a one-split dataset, the
    pseudo-label chain and its inspection, no training job."""
    if not (repo_root.parent / "shared/data/dota_sample/images").is_dir():
        pytest.skip("the example reads ../shared/data/dota_sample (the repository's real fixtures)")
    proc = subprocess.run([SNAKEMAKE, "-n", "--forceall", "--configfile", "configs/own_imagery.yaml"],
                          cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    assert {k: counts.get(k) for k in ("tile", "pseudo_masks", "pseudo_inspect", "pretrain", "finetune")} == {
        "tile": 1, "pseudo_masks": 1, "pseudo_inspect": 1, "pretrain": None, "finetune": None}
    assert "results_own/pseudo_labels/my_scenes/my_scenes/all/inspect" in proc.stdout
