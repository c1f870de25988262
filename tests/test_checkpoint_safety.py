"""Checkpoints are read with ``torch.load(weights_only=True)``: a crafted pickle is refused without running
code, a normal save/resume round trip stays exact, and checkpoints of the older format (numpy RNG tuples)
still resume."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from mutdet_core.engine import LAST, build_optimizer, load_checkpoint
from mutdet_core.engine.checkpoint import CheckpointError, atomic_save, rng_state, set_rng_state
from mutdet_core.runs.inference import load_finetuned
from test_engine import Crash, TinyRegressor, assert_same_weights, crashing_forward, run, small_cfg

torch.set_num_threads(1)


class CreatesAFile:
    """Unpickling this calls ``open(marker, "w")``: what a crafted checkpoint could do instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def write_crafted(path, marker):
    torch.save({"model": {"w": torch.ones(2)}, "epoch": 3, "meta": {"payload": CreatesAFile(marker)}}, path)
    # control: an unrestricted load does run the payload, so the checks below can fail
    torch.load(path, weights_only=False)
    assert marker.is_file()
    marker.unlink()


@pytest.mark.parametrize("name", [LAST, "epoch_3.pth"])
def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path, name):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / name
    write_crafted(path, marker)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "refused" in message and "retrain" in message
    assert not marker.exists()


def test_crafted_files_are_refused_where_training_and_prediction_read_them(tmp_path):
    marker = tmp_path / "pwned.txt"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_crafted(run_dir / LAST, marker)  # a resume reads last.pth
    with pytest.raises(CheckpointError, match=f"{run_dir / LAST}: refused"):
        run(run_dir, small_cfg())
    write_crafted(run_dir / "epoch_3.pth", marker)  # prediction reads epoch_<E>.pth
    with pytest.raises(CheckpointError, match="epoch_3.pth: refused"):
        load_finetuned(run_dir / "epoch_3.pth", None, ["plane"])
    assert not marker.exists()


def test_save_and_load_round_trip_is_exact(tmp_path):
    torch.manual_seed(0)
    model = TinyRegressor()
    optimizer = build_optimizer(model, 1e-2, 1e-4)
    for _ in range(3):  # AdamW moments and step counts to carry over
        optimizer.zero_grad()
        model(torch.rand(2, 3, 16, 16), None, None)["pred"].square().sum().backward()
        optimizer.step()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.random(), np.random.standard_normal()  # numpy now holds a cached gaussian
    path = atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": [rng_state()]},
                       tmp_path / LAST)
    # a file of tensors and plain types only: nothing to allow-list
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    draws = (random.random(), np.random.standard_normal(3).tolist(), torch.rand(3))

    state = load_checkpoint(path)
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(state["rng"][0])
    assert (random.random(), np.random.standard_normal(3).tolist()) == draws[:2]
    assert torch.equal(torch.rand(3), draws[2])
    fresh = TinyRegressor()
    fresh.load_state_dict(state["model"])
    assert_same_weights(model, fresh)
    restored = build_optimizer(fresh, 1e-2, 1e-4)
    restored.load_state_dict(state["optimizer"])
    saved, again = optimizer.state_dict(), restored.state_dict()
    assert saved["param_groups"] == again["param_groups"]
    for index, moments in saved["state"].items():
        assert all(torch.equal(v, again["state"][index][k]) for k, v in moments.items())


def test_checkpoint_with_old_numpy_rng_state_still_resumes_exactly(tmp_path):
    cfg = small_cfg()
    reference, _ = run(tmp_path / "a", cfg)
    with pytest.raises(Crash):  # killed in epoch 2, after epoch 1's last.pth
        run(tmp_path / "b", cfg, forward_fn=crashing_forward(9))
    last = tmp_path / "b" / LAST
    state = load_checkpoint(last)
    for rank_state in state["rng"]:  # back to what the old code stored: the generators' own tuples
        set_rng_state(rank_state)
        rank_state.update(python=random.getstate(), numpy=np.random.get_state())
    torch.save(state, last)
    assert "numpy.ndarray" in torch.serialization.get_unsafe_globals_in_checkpoint(last)
    resumed, result = run(tmp_path / "b", cfg)
    assert result["resumed_from"] == 6
    assert_same_weights(reference, resumed)
