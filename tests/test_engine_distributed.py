"""Distributed set-up: launcher environments (torchrun, SLURM) and a real 2-process DDP run on CPU (gloo)."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from mutdet_core.engine import distributed
from mutdet_core.engine.distributed import DistInfo, detect_launch, first_slurm_host

LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS",
               "SLURM_LOCALID", "SLURM_JOB_NODELIST", "SLURM_JOB_ID")


@pytest.fixture
def clean_env(monkeypatch):
    """No launcher variables; the whole environment is restored afterwards (detect_launch itself exports
    RANK / WORLD_SIZE / MASTER_* for SLURM, which monkeypatch alone would not undo)."""
    saved = dict(os.environ)
    for name in LAUNCH_VARS:
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize("nodelist, host", [
    ("gpu017", "gpu017"),
    ("gpu[003-005,9]", "gpu003"),
    ("gpu[003-005,9],cpu1", "gpu003"),
    ("node-a,node-b", "node-a"),
    ("rack1-[07-08]-x", "rack1-07-x"),
    ("a[1-2]b[3-4]", "a1b3"),
    (" n[10,2] ", "n10"),
])
def test_first_slurm_host(nodelist, host):
    assert first_slurm_host(nodelist) == host


def test_first_slurm_host_errors():
    with pytest.raises(ValueError, match="empty"):
        first_slurm_host("")
    with pytest.raises(ValueError, match="cannot parse"):
        first_slurm_host("gpu[001")


def test_single_process_without_launcher(clean_env):
    assert detect_launch() == DistInfo(0, 1, 0)
    clean_env.setenv("SLURM_NTASKS", "1")  # one task per sbatch job (Snakemake's slurm executor)
    clean_env.setenv("SLURM_PROCID", "0")
    assert not detect_launch().distributed


def test_torchrun_environment(clean_env):
    clean_env.setenv("RANK", "3")
    clean_env.setenv("WORLD_SIZE", "8")
    clean_env.setenv("LOCAL_RANK", "1")
    assert detect_launch() == DistInfo(3, 8, 1)
    clean_env.setenv("RANK", "8")
    with pytest.raises(ValueError, match="outside world size"):
        detect_launch()
    clean_env.setenv("RANK", "two")
    with pytest.raises(ValueError, match="RANK='two' is not an integer"):
        detect_launch()


def test_slurm_environment_sets_master_from_nodelist(clean_env):
    for name, value in {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
                        "SLURM_JOB_NODELIST": "gpu[012-013]", "SLURM_JOB_ID": "123456"}.items():
        clean_env.setenv(name, value)
    assert detect_launch() == DistInfo(5, 8, 1)
    assert os.environ["MASTER_ADDR"] == "gpu012"
    assert os.environ["MASTER_PORT"] == str(20000 + 123456 % 10000)
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("5", "8", "1")


def test_slurm_keeps_an_explicit_master(clean_env):
    for name, value in {"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "n[1-2]",
                        "MASTER_ADDR": "10.0.0.7", "MASTER_PORT": "29999"}.items():
        clean_env.setenv(name, value)
    detect_launch()
    assert (os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"]) == ("10.0.0.7", "29999")


def test_helpers_without_process_group():
    assert distributed.get_world_size() == 1 and distributed.get_rank() == 0 and distributed.is_main_process()
    values = {"a": torch.tensor(2.0)}
    assert distributed.reduce_dict(values)["a"] == 2.0
    assert distributed.all_gather_object({"x": 1}) == [{"x": 1}]
    assert distributed.all_reduce_sum(torch.tensor(3.0)) == 3.0


# ----------------------------------------------------------------------------------------- real DDP run
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, root: str):
    from pathlib import Path

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from mutdet_core.engine import build_train_loader, init_distributed, train
    from test_engine import (Crash, RandomImages, TinyCriterion, TinyRegressor, collate_images, crashing_forward,
                             small_cfg)

    info, device = init_distributed("cpu", timeout_minutes=2)  # a bug fails the test instead of hanging it
    assert info == DistInfo(rank, world, rank) and torch.distributed.get_backend() == "gloo"
    cfg = small_cfg(batch_size=1, checkpoint_epochs=[])
    root = Path(root)

    def run(out, **kw):
        torch.manual_seed(0)
        model = TinyRegressor(dropout=0.0)
        loader = build_train_loader(RandomImages(), cfg.batch_size, collate_images, seed=cfg.seed, num_workers=0)
        train(model, TinyCriterion(), loader, cfg, root / out, device, **kw)
        return model

    model = run("uninterrupted")
    torch.save(model.state_dict(), root / f"uninterrupted_rank{rank}.pt")
    try:
        run("resumed", forward_fn=crashing_forward(9))  # both ranks die at the same step, after epoch 1
    except Crash:
        pass
    model = run("resumed")
    torch.save(model.state_dict(), root / f"resumed_rank{rank}.pt")
    distributed.destroy_distributed()


def test_ddp_two_processes_on_cpu(tmp_path):
    """2 ranks x batch 1 with gloo: identical weights on both ranks, exact resume under DDP, and the same
    result as one process with batch 2 (the sampler interleaves ranks so the global batches coincide)."""
    assert not any(name in os.environ for name in LAUNCH_VARS), "launcher variables leaked into the test process"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    states = {name: torch.load(tmp_path / f"{name}.pt") for name in
              ("uninterrupted_rank0", "uninterrupted_rank1", "resumed_rank0", "resumed_rank1")}
    ref = states["uninterrupted_rank0"]
    for name, state in states.items():
        for key in ref:
            assert torch.equal(ref[key], state[key]), f"{name}: {key} differs from rank 0"
    assert (tmp_path / "uninterrupted" / "losses.csv").is_file()
    assert not (tmp_path / "uninterrupted" / "rank1").exists()

    from test_engine import TinyCriterion, TinyRegressor, collate_images, RandomImages, small_cfg
    from mutdet_core.engine import build_train_loader, train

    torch.manual_seed(0)
    single = TinyRegressor(dropout=0.0)
    cfg = small_cfg(batch_size=2, checkpoint_epochs=[])
    loader = build_train_loader(RandomImages(), 2, collate_images, seed=cfg.seed, num_workers=0)
    train(single, TinyCriterion(), loader, cfg, tmp_path / "single", "cpu")
    for key, value in single.state_dict().items():
        torch.testing.assert_close(value, ref[key], rtol=1e-5, atol=1e-6)


def _rank_and_sum(value):
    import torch

    from mutdet_core.engine.distributed import all_reduce_sum, get_rank, get_world_size, init_distributed

    init_distributed("cpu")
    total = all_reduce_sum(torch.tensor(float(value + get_rank())))
    return get_rank(), get_world_size(), float(total)


def test_launch_spawns_a_process_group_and_returns_rank_zero():
    from mutdet_core.engine.launch import launch

    assert launch(_rank_and_sum, 3, 10) == (0, 3, 10 + 11 + 12)
    assert launch(_rank_and_sum, 1, 10) == (0, 1, 10.0)  # no processes started: runs here


def _threads_of_this_process():
    return torch.get_num_threads()


def test_launch_shares_the_jobs_threads_among_its_processes():
    from mutdet_core.engine.launch import launch

    before = torch.get_num_threads()
    try:
        assert launch(_threads_of_this_process, 2, threads=4) == 2  # rank 0 of 2 gets half of 4
        assert launch(_threads_of_this_process, 2, threads=1) == 1  # never fewer than one
        assert launch(_threads_of_this_process, 1, threads=1) == 1  # in this process
    finally:
        torch.set_num_threads(before)
