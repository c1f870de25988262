"""Training engine: optimizer groups, schedule, sampler, atomic checkpoints, exact resume, loss logs.

The stand-ins below follow the engine's model / criterion API and are reused by test_engine_distributed.py,
test_data_pipeline.py and (as a fallback) bench/bench_engine.py: a small conv net regressing the mean
colour of seeded random images (with dropout, so RNG restoring matters), and a detector-like model with
DETR-style dict outputs.
"""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from torch import nn

from mutdet_core.data.collate import Batch
from mutdet_core.engine import (LAST, SeededSampler, TrainConfig, build_lr_scheduler, build_optimizer,
                                build_train_loader, decay_epochs_for, load_checkpoint, split_key, train)
from mutdet_core.engine import checkpoint as checkpoint_module
from mutdet_core.engine.checkpoint import CheckpointError, atomic_save

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------ stand-ins
class RandomImages(torch.utils.data.Dataset):
    """Seeded random 3x16x16 images; the target is the per-channel mean. The sampler's per-sample seed adds
    noise, standing in for random augmentation."""

    def __init__(self, n: int = 12, size: int = 16):
        self.n, self.size = n, size

    def __len__(self):
        return self.n

    def __getitem__(self, key):
        index, seed = split_key(key)
        image = np.random.default_rng(index).random((3, self.size, self.size), dtype=np.float32)
        image = image + 0.01 * np.random.default_rng(seed).standard_normal(image.shape).astype(np.float32)
        return torch.from_numpy(image), torch.from_numpy(image.mean(axis=(1, 2)))


def collate_images(items) -> Batch:
    images = torch.stack([i for i, _ in items])
    masks = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.bool)
    return Batch(images, masks, [{"value": t} for _, t in items])


class TinyRegressor(nn.Module):
    """Conv net with parameter names that hit every lr-multiplier key, and one frozen parameter."""

    def __init__(self, dropout: float = 0.2):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.sampling_offsets = nn.Linear(8, 8)
        self.reference_points = nn.Linear(8, 8)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(8, 3)
        self.frozen = nn.Parameter(torch.ones(3), requires_grad=False)

    def forward(self, images, masks, targets):
        x = self.backbone(images)
        x = torch.relu(self.sampling_offsets(x)) + self.reference_points(x)
        return {"pred": self.head(self.dropout(x)) * self.frozen}


class TinyCriterion(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight_dict = {"loss_l1": 1.0, "loss_mse": 2.0}

    def forward(self, outputs, targets):
        target = torch.stack([t["value"] for t in targets])
        return {"loss_l1": (outputs["pred"] - target).abs().mean(),
                "loss_mse": ((outputs["pred"] - target) ** 2).mean(),
                "unweighted_metric": outputs["pred"].detach().mean()}


class TinyDetector(nn.Module):
    """Detector-shaped stand-in: DETR-style dict with aux outputs (see docs/DETECTOR_CONTRACT.md)."""

    def __init__(self, num_queries: int = 5, num_classes: int = 3, layers: int = 2):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                      nn.Flatten())
        self.query_embed = nn.Embedding(num_queries, 32)
        self.decoder = nn.ModuleList(nn.Linear(32 + 32, 32) for _ in range(layers))
        self.class_embed = nn.Linear(32, num_classes)
        self.bbox_embed = nn.Linear(32, 4)
        self.angle_embed = nn.Linear(32, 1)

    def forward(self, images, masks, targets):
        feat = self.backbone(images)  # (B, 32)
        h = self.query_embed.weight[None].expand(feat.shape[0], -1, -1)
        outs = []
        for layer in self.decoder:
            h = torch.relu(layer(torch.cat([h, feat[:, None].expand_as(h)], -1)))
            outs.append({"pred_logits": self.class_embed(h), "pred_boxes": self.bbox_embed(h).sigmoid(),
                         "pred_angles": torch.tanh(self.angle_embed(h))[..., 0] * math.pi / 2})
        return {**outs[-1], "aux_outputs": outs[:-1]}


class TinySetCriterion(nn.Module):
    """First-n-queries 'matching' and losses with the contract's key names and ``_{i}`` aux suffixes."""

    def __init__(self, layers: int = 2):
        super().__init__()
        self.weight_dict = {}
        for suffix in [""] + [f"_{i}" for i in range(layers - 1)]:
            self.weight_dict.update({f"loss_cls{suffix}": 2.0, f"loss_bbox{suffix}": 5.0, f"loss_angle{suffix}": 2.0})

    def single(self, out, targets):
        cls, box, ang = [], [], []
        for b, t in enumerate(targets):
            n = min(len(t["labels"]), out["pred_logits"].shape[1])
            onehot = torch.zeros_like(out["pred_logits"][b])
            onehot[torch.arange(n), t["labels"][:n]] = 1
            cls.append(nn.functional.binary_cross_entropy_with_logits(out["pred_logits"][b], onehot))
            box.append((out["pred_boxes"][b, :n] - t["boxes"][:n]).abs().sum() / max(n, 1))
            ang.append((out["pred_angles"][b, :n] - t["angles"][:n]).abs().sum() / max(n, 1))
        return {"loss_cls": torch.stack(cls).mean(), "loss_bbox": torch.stack(box).mean(),
                "loss_angle": torch.stack(ang).mean()}

    def forward(self, outputs, targets):
        losses = self.single(outputs, targets)
        for i, aux in enumerate(outputs["aux_outputs"]):
            losses.update({f"{k}_{i}": v for k, v in self.single(aux, targets).items()})
        return losses


def small_cfg(**kw) -> TrainConfig:
    values = dict(epochs=3, batch_size=2, lr=1e-2, warmup_iters=4, log_interval=2, num_workers=0, seed=7,
                  checkpoint_epochs=[1, 2], progress_bar=False)
    values.update(kw)
    return TrainConfig.from_dict(values)


def run(out_dir, cfg, model_cls=TinyRegressor, criterion_cls=TinyCriterion, dataset=None, collate=collate_images,
        **kw):
    torch.manual_seed(0)
    model, criterion = model_cls(), criterion_cls()
    loader = build_train_loader(dataset or RandomImages(), cfg.batch_size, collate, seed=cfg.seed,
                                num_workers=cfg.num_workers)
    result = train(model, criterion, loader, cfg, out_dir, "cpu", **kw)
    return model, result


class Crash(RuntimeError):
    pass


def crashing_forward(at_call: int):
    """A forward_fn that raises on its ``at_call``-th call: stands in for a job killed mid-run."""
    calls = {"n": 0}

    def forward(model, criterion, batch):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise Crash(f"simulated kill at call {at_call}")
        return criterion(model(batch.images, batch.masks, batch.targets), batch.targets)

    return forward


def assert_same_weights(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), f"{key} differs"


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------------------------ optimizer groups
def test_param_groups_lr_and_frozen_parameters_excluded():
    model = TinyRegressor()
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=1e-5)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["default"]["lr"] == pytest.approx(1e-4)
    assert groups["lr_mult"]["lr"] == pytest.approx(1e-5)
    assert set(groups["default"]["param_names"]) == {"head.weight", "head.bias"}
    assert set(groups["lr_mult"]["param_names"]) == {
        "backbone.0.weight", "backbone.0.bias", "sampling_offsets.weight", "sampling_offsets.bias",
        "reference_points.weight", "reference_points.bias"}
    all_names = groups["default"]["param_names"] + groups["lr_mult"]["param_names"]
    assert "frozen" not in all_names
    assert all(g["weight_decay"] == 1e-5 for g in optimizer.param_groups)
    assert optimizer.defaults["betas"] == (0.9, 0.999)


def test_param_group_keys_are_configurable_and_validated():
    model = TinyRegressor()
    optimizer = build_optimizer(model, lr_mult=0.5, lr_mult_keys=["head"])
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert set(groups["lr_mult"]["param_names"]) == {"head.weight", "head.bias"}
    assert groups["lr_mult"]["lr"] == pytest.approx(0.5e-4)
    with pytest.raises(ValueError, match="list of name substrings"):
        build_optimizer(model, lr_mult_keys="backbone")
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(model)


# --------------------------------------------------------------------------------------------- schedule
def test_decay_epochs_for_reference_schedules():
    assert decay_epochs_for(36) == [32]
    assert decay_epochs_for(24) == [21]
    assert decay_epochs_for(12) == [11]
    with pytest.raises(ValueError, match="positive integer"):
        decay_epochs_for(0)


def lrs_along_schedule(epochs: int, iters_per_epoch: int, **kw) -> np.ndarray:
    """The default-group lr used at every iteration of a run, through a real optimizer + LambdaLR."""
    optimizer = build_optimizer(TinyRegressor(), lr=1e-4)
    scheduler = build_lr_scheduler(optimizer, iters_per_epoch, epochs, **kw)
    lrs = []
    for _ in range(epochs * iters_per_epoch):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return np.asarray(lrs)


@pytest.mark.parametrize("epochs, decay", [(12, 11), (24, 21), (36, 32)])
def test_schedule_values_at_key_iterations(epochs, decay):
    ipe = 100
    lrs = lrs_along_schedule(epochs, ipe)
    base, mult = lrs[:, 0], lrs[:, 1]
    assert base[0] == pytest.approx(1e-4 / 3)                     # warm-up starts at 1/3
    assert base[250] == pytest.approx(1e-4 * (1 / 3 + 2 / 3 * 0.5))  # linear
    assert base[499] == pytest.approx(1e-4 * (1 - (1 / 500) * (2 / 3)))
    assert base[500] == pytest.approx(1e-4)                       # warm-up over
    assert base[decay * ipe - 1] == pytest.approx(1e-4)           # last iteration before the step
    assert base[decay * ipe] == pytest.approx(1e-5)               # x0.1 from epoch `decay` (0-based) on
    assert base[-1] == pytest.approx(1e-5)
    np.testing.assert_allclose(mult, base * 0.1)                  # the 0.1x group keeps its ratio
    assert (epochs * ipe - decay * ipe) / ipe == epochs - decay   # epochs at the low rate: 1, 3, 4


def test_warmup_multiplies_the_decayed_rate_like_mmcv():
    lrs = lrs_along_schedule(2, 10, decay_epochs=[1], warmup_iters=40)[:, 0]
    assert lrs[5] == pytest.approx(1e-4 * (1 - (1 - 5 / 40) * (2 / 3)))
    assert lrs[15] == pytest.approx(1e-5 * (1 - (1 - 15 / 40) * (2 / 3)))


# ---------------------------------------------------------------------------------------------- sampler
def test_sampler_order_depends_on_seed_and_epoch_only():
    a, b = SeededSampler(50, seed=3, num_replicas=1, rank=0), SeededSampler(50, seed=3, num_replicas=1, rank=0)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b)
    assert sorted(i for i, _ in a) == list(range(50))
    b.set_epoch(5)
    assert [i for i, _ in a] != [i for i, _ in b]
    c = SeededSampler(50, seed=4, num_replicas=1, rank=0)
    c.set_epoch(4)
    assert [i for i, _ in a] != [i for i, _ in c]
    assert len({s for _, s in a}) == 50  # a distinct augmentation seed per sample


def test_sampler_shards_pad_and_resume_mid_epoch():
    full = SeededSampler(7, seed=1, num_replicas=1, rank=0)
    shards = [SeededSampler(7, seed=1, num_replicas=2, rank=r) for r in range(2)]
    for s in [full, *shards]:
        s.set_epoch(2)
    r0, r1 = list(shards[0]), list(shards[1])
    assert len(r0) == len(r1) == 4
    assert [i for i, _ in full] == [i for pair in zip(r0, r1) for i, _ in pair][:7]  # interleaved
    assert r1[-1][0] == r0[0][0]  # the padding repeats the head of the permutation
    shards[0].set_start(3)
    assert list(shards[0]) == r0[3:]
    state = shards[0].state_dict()
    other = SeededSampler(7, seed=1, num_replicas=2, rank=0)
    other.load_state_dict(state)
    assert list(other) == r0[3:]
    with pytest.raises(ValueError, match="num_replicas"):
        SeededSampler(7, seed=1, num_replicas=1, rank=0).load_state_dict(state)


# ------------------------------------------------------------------------------------------- checkpoints
def test_crash_during_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / LAST
    atomic_save({"model": {"w": torch.ones(3)}, "epoch": 1}, path)

    def dying_save(obj, handle):
        handle.write(b"PK\x03\x04 half a zip file")
        raise OSError("No space left on device (simulated)")

    monkeypatch.setattr(checkpoint_module.torch, "save", dying_save)
    with pytest.raises(OSError, match="simulated"):
        atomic_save({"model": {"w": torch.zeros(3)}, "epoch": 2}, path)
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == [LAST]  # no temporary file left behind


def test_corrupt_checkpoint_gives_clear_error(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pth")


# ----------------------------------------------------------------------------------- training and resume
def test_resume_after_crash_matches_uninterrupted_run(tmp_path):
    cfg = small_cfg()
    reference, result = run(tmp_path / "a", cfg)
    assert result["epoch"] == 3 and result["iteration"] == 18
    assert sorted(result["checkpoints"]) == [1, 2, 3]

    with pytest.raises(Crash):  # killed in epoch 2 (call 9 = 3rd iteration of epoch 2), after epoch 1's save
        run(tmp_path / "b", cfg, forward_fn=crashing_forward(9))
    assert load_checkpoint(tmp_path / "b" / LAST)["epoch"] == 1
    resumed, result_b = run(tmp_path / "b", cfg)
    assert result_b["resumed_from"] == 6
    assert_same_weights(reference, resumed)
    # The loss curve of the resumed run is the uninterrupted one: rows written after the last checkpoint
    # by the killed run were dropped, none are missing or doubled.
    assert read_csv(tmp_path / "a" / "losses.csv") == read_csv(tmp_path / "b" / "losses.csv")
    for name in ("epoch_1.pth", "epoch_2.pth", "epoch_3.pth"):
        a, b = load_checkpoint(tmp_path / "a" / name), load_checkpoint(tmp_path / "b" / name)
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        assert "optimizer" not in a  # epoch checkpoints are light by default

    # A rerun of a finished run does nothing.
    again, result_c = run(tmp_path / "b", cfg)
    assert result_c["iteration"] == 18 and result_c["resumed_from"] == 18


def test_rerun_after_snakemake_deleted_the_epoch_checkpoints(tmp_path):
    """Snakemake deletes a job's outputs before rerunning it: the final epoch's checkpoint is rewritten
    from last.pth; a lost earlier one cannot be, so the run trains again and ends with the same weights."""
    cfg = small_cfg()
    reference, _ = run(tmp_path / "a", cfg)
    (tmp_path / "a" / "epoch_3.pth").unlink()
    _, result = run(tmp_path / "a", cfg)
    assert result["resumed_from"] == 18  # nothing trained again
    final = load_checkpoint(tmp_path / "a" / "epoch_3.pth")
    assert all(torch.equal(final["model"][k], v) for k, v in reference.state_dict().items())
    assert "optimizer" not in final

    (tmp_path / "a" / "epoch_2.pth").unlink()
    again, result = run(tmp_path / "a", cfg)
    assert result["resumed_from"] is None and result["iteration"] == 18
    assert_same_weights(reference, again)
    assert (tmp_path / "a" / "epoch_2.pth").is_file()


def test_mid_epoch_resume_with_detector_like_outputs(tmp_path):
    """Rolling last.pth every 2 iterations, killed in the middle of epoch 2, with a DETR-like model."""
    cfg = small_cfg(epochs=2, checkpoint_every_iters=2, checkpoint_epochs=[])
    dataset = DetectionLike()
    reference, _ = run(tmp_path / "a", cfg, TinyDetector, TinySetCriterion, dataset, collate_detection_like)
    with pytest.raises(Crash):
        run(tmp_path / "b", cfg, TinyDetector, TinySetCriterion, dataset, collate_detection_like,
            forward_fn=crashing_forward(10))
    state = load_checkpoint(tmp_path / "b" / LAST)
    assert (state["epoch"], state["iteration"], state["sampler"]["start"]) == (1, 8, 4)
    resumed, _ = run(tmp_path / "b", cfg, TinyDetector, TinySetCriterion, dataset, collate_detection_like)
    assert_same_weights(reference, resumed)
    header = read_csv(tmp_path / "a" / "losses.csv")[0].keys()
    assert {"loss_cls", "loss_cls_0", "loss_bbox_0", "loss_angle"} <= set(header)


class DetectionLike(torch.utils.data.Dataset):
    """Random images with 0-4 random oriented boxes per image (some images without objects)."""

    def __len__(self):
        return 12

    def __getitem__(self, key):
        index, seed = split_key(key)
        rng = np.random.default_rng(index)
        n = index % 5
        image = torch.from_numpy(rng.random((3, 32, 32), dtype=np.float32))
        flip = np.random.default_rng(seed).random() < 0.5  # the "augmentation"
        if flip:
            image = image.flip(-1)
        boxes = rng.uniform(0.2, 0.8, size=(n, 4)).astype(np.float32)
        if flip:
            boxes[:, 0] = 1 - boxes[:, 0]
        target = {"labels": torch.from_numpy(rng.integers(0, 3, n)), "boxes": torch.from_numpy(boxes),
                  "angles": torch.from_numpy(rng.uniform(-1.5, 1.5, n).astype(np.float32))}
        return image, target


def collate_detection_like(items) -> Batch:
    images = torch.stack([i for i, _ in items])
    return Batch(images, torch.zeros(images.shape[0], 32, 32, dtype=torch.bool), [t for _, t in items])


def test_resume_refuses_a_changed_config(tmp_path):
    run(tmp_path / "a", small_cfg(epochs=1, checkpoint_epochs=[]))
    with pytest.raises(CheckpointError, match="lr: 0.01 -> 0.02"):
        run(tmp_path / "a", small_cfg(epochs=1, checkpoint_epochs=[], lr=2e-2))


def test_stale_temporary_files_are_removed_and_logs_written(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    stale = out / f".{LAST}.abc123.tmp"
    stale.write_bytes(b"half written by a killed job")
    run(out, small_cfg(epochs=2, checkpoint_epochs=[]))
    assert not stale.exists()
    rows = read_csv(out / "losses.csv")
    assert [int(r["iter"]) for r in rows] == [2, 4, 6, 8, 10, 12]
    assert [int(r["epoch"]) for r in rows] == [1, 1, 1, 2, 2, 2]
    first = rows[0]
    assert {"epoch", "iter", "lr", "loss", "grad_norm", "loss_l1", "loss_mse", "unweighted_metric"} == set(first)
    assert float(first["lr"]) == pytest.approx(1e-2 * (1 - (1 - 1 / 4) * (2 / 3)))  # lr of iteration 2 (index 1)
    assert all(math.isfinite(float(r["loss"])) for r in rows)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/total", "loss/loss_l1", "loss/loss_mse", "lr/default", "lr/lr_mult", "grad_norm"} <= tags
    steps = [e.step for e in events.Scalars("loss/total")]
    assert steps == [2, 4, 6, 8, 10, 12]
    csv_losses = [float(r["loss"]) for r in rows]
    assert [e.value for e in events.Scalars("loss/total")] == pytest.approx(csv_losses, rel=1e-5)  # CSV: 6 digits


def test_gradient_clipping_bounds_the_gradient(tmp_path):
    """The applied gradient has norm <= clip_max_norm; the CSV logs the norm before clipping."""
    seen = []

    def after_step(model, criterion, iteration):  # the step's gradients are still in .grad here
        grads = [p.grad.norm() for p in model.parameters() if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack(grads))))

    run(tmp_path, small_cfg(epochs=1, clip_max_norm=0.01, checkpoint_epochs=[], log_interval=1), after_step=after_step)
    logged = [float(r["grad_norm"]) for r in read_csv(tmp_path / "losses.csv")]
    assert len(seen) == len(logged) == 6
    assert max(seen) <= 0.01 * (1 + 1e-4)
    assert min(logged) > 0.01  # this model's raw gradients are larger: clipping was active
    np.testing.assert_allclose(seen, 0.01, rtol=1e-4)


def test_bad_inputs_are_reported(tmp_path):
    with pytest.raises(ValueError, match="unknown training config keys"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="checkpoint_epochs"):
        TrainConfig.from_dict({"epochs": 12, "checkpoint_epochs": [24]})
    with pytest.raises(ValueError, match="amp="):
        TrainConfig.from_dict({"amp": "fp8"})
    loader = torch.utils.data.DataLoader(RandomImages(), batch_size=2, collate_fn=collate_images)
    with pytest.raises(TypeError, match="SeededSampler"):
        train(TinyRegressor(), TinyCriterion(), loader, small_cfg(), tmp_path, "cpu")
    criterion = TinyCriterion()
    criterion.weight_dict = {"loss_other": 1.0}
    loader = build_train_loader(RandomImages(), 2, collate_images, num_workers=0)
    with pytest.raises(KeyError, match="weight_dict names none"):
        train(TinyRegressor(), criterion, loader, small_cfg(), tmp_path, "cpu")


def test_non_finite_loss_stops_with_context(tmp_path):
    def nan_forward(model, criterion, batch):
        losses = criterion(model(batch.images, batch.masks, batch.targets), batch.targets)
        losses["loss_l1"] = losses["loss_l1"] * float("nan")
        return losses

    with pytest.raises(FloatingPointError, match="iteration 1: loss_l1=nan"):
        run(tmp_path, small_cfg(), forward_fn=nan_forward)


def test_fresh_run_in_an_old_folder_and_progress_bar(tmp_path, capsys):
    run(tmp_path, small_cfg(epochs=1, checkpoint_epochs=[]))
    _, result = run(tmp_path, small_cfg(epochs=1, checkpoint_epochs=[], resume=False, progress_bar=True))
    assert result["resumed_from"] is None and result["iteration"] == 6
    assert [int(r["iter"]) for r in read_csv(tmp_path / "losses.csv")] == [2, 4, 6]  # the old rows are gone
    assert "6/6" in capsys.readouterr().err  # tqdm's final count


def test_log_lines_are_readable(tmp_path, caplog):
    import re

    with caplog.at_level("INFO", logger="mutdet.engine"):
        run(tmp_path, small_cfg(epochs=1, checkpoint_epochs=[], log_interval=3))
    messages = [r.getMessage() for r in caplog.records]
    lines = [m for m in messages if m.startswith("epoch ") and " iter " in m]
    pattern = r"epoch 1/1 iter (3|6)/6 \| loss [\d.]+ \(loss_l1 [\d.e-]+, loss_mse [\d.e-]+, unweighted_metric " \
              r"[-\d.e]+\) \| lr [\d.e+-]+ \| [\d.]+ it/s \| ETA \d+:\d\d:\d\d"
    assert len(lines) == 2 and all(re.fullmatch(pattern, line) for line in lines), lines
    assert any("training 1 epochs x 6 iterations on cpu" in r.getMessage() for r in caplog.records)
