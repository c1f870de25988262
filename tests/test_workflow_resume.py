"""A fine-tuning job killed with SIGKILL mid-run (Snakemake and the job together, as a lost node or an
out-of-memory kill does) resumes from its last.pth when the same Snakemake command is run again, and ends
with the weights of an uninterrupted run."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import torch

from mutdet_core.engine import LAST, load_checkpoint
from mutdet_core.runs import finetune_run
from test_workflow import SNAKEMAKE, TINY_MODEL, TINY_TRAIN, run_snakemake, write_config

pytestmark = pytest.mark.snakemake
RUN = "results/finetune/synthetic/tiny/none/frac1/e3/seed1"


def test_killed_finetune_job_resumes_to_the_uninterrupted_weights(repo_root, tmp_path):
    # 4 one-tile images at batch 1: 4 iterations an epoch, so epochs 2-3 outlast the kill's reaction time
    cfg = write_config(
        tmp_path / "kill.yaml",
        synthetic={"seed": 4, "images": {"train": 4, "test": 1}, "min_side": 400, "max_side": 600},
        datasets={"synthetic": {"source": "synthetic", "classes": "synthetic", "splits": ["train", "test"]}},
        models={"tiny": TINY_MODEL},
        finetune={"datasets": {"synthetic": {"train": "train", "test": "test"}}, "inits": ["none"],
                  "fractions": [1.0], "seeds": [1], "train": dict(TINY_TRAIN, epochs=3, batch_size=1),
                  "data": {"resize": 256}},
        tables=[],
    )
    target = f"{RUN}/epoch_3.pth"
    run_dir, log_path = tmp_path / RUN, tmp_path / "results/logs/finetune/synthetic/tiny/none/frac1/e3/seed1.log"
    cmd = [SNAKEMAKE, "--snakefile", str(repo_root / "Snakefile"), "--directory", str(tmp_path), "--cores", "2",
           target, "--configfile", str(cfg)]
    with open(tmp_path / "killed_snakemake.out", "w") as out:
        # its own process group: the kill reaches Snakemake and the job it started, nothing else
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env=dict(os.environ, OMP_NUM_THREADS="1"))
        try:
            deadline = time.monotonic() + 120
            while not (run_dir / LAST).is_file():  # written atomically after each epoch
                assert proc.poll() is None, (tmp_path / "killed_snakemake.out").read_text()[-3000:]
                assert time.monotonic() < deadline, "no last.pth after 120 s"
                time.sleep(0.02)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not (run_dir / "epoch_3.pth").exists(), "the job finished before the kill: nothing was interrupted"
    killed_at = load_checkpoint(run_dir / LAST)
    assert 1 <= killed_at["epoch"] < 3

    # The killed Snakemake left its locks: remove them as `snakemake --unlock` does (a third Snakemake start
    # would cost ~10 s), then run exactly the same command again.
    locks = tmp_path / ".snakemake" / "locks"
    assert any(locks.iterdir())
    shutil.rmtree(locks)
    run_snakemake(repo_root, tmp_path, cfg, target)
    log = log_path.read_text()
    assert (f"resumed from {RUN}/{LAST}: {killed_at['epoch']} epochs and {killed_at['iteration']} iterations done"
            in log), log
    resumed = load_checkpoint(run_dir / "epoch_3.pth")
    assert resumed["epoch"] == 3 and resumed["iteration"] == 12

    # The uninterrupted run of the same settings (the identity fingerprint proves they are the same), in process
    identity = json.loads((run_dir / "run.json").read_text())
    configs = identity["identity"]["configs"]
    torch.set_num_threads(1)  # as the job (threads: 1): the same kernels, the same sums
    reference_dir = tmp_path / "uninterrupted"
    finetune_run(tmp_path / "results/tiles/synthetic/train.zarr", reference_dir, detector_cfg=configs["detector"],
                 train_cfg=json.loads((run_dir / "train_config.json").read_text()), data_cfg=configs["data"],
                 fraction=configs["fraction"], fraction_seed=configs["fraction_seed"], device="cpu")
    assert json.loads((reference_dir / "run.json").read_text())["fingerprint"] == identity["fingerprint"]
    reference = load_checkpoint(reference_dir / "epoch_3.pth")
    assert reference["model"].keys() == resumed["model"].keys()
    for key, value in reference["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, rtol=0, atol=1e-6, msg=key)
