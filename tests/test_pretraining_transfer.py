"""Pre-training checkpoint -> fine-tuning detector (docs/checkpoints.md, "Pre-training checkpoints"), and one
pre-training run through the shared training engine."""
from __future__ import annotations

import re

import pytest
import torch

from mutdet_core.models.detector import build_detector
from mutdet_core.pretraining import build_pretrainer, load_pretraining_checkpoint

from pretraining_fixtures import TINY_DETECTOR, make_batch

torch.set_num_threads(1)
FINETUNE = dict(TINY_DETECTOR, num_classes=3)
FRESH = re.compile(r"^(heads\.class_branches\.\d+\.(weight|bias)|denoising\.label_embedding\.weight)$")
METHOD_MODULES = {
    "mutdet": ("mutual_enhancement.", "embedding_head.", "encoder_embedding_head."),
    "detreg": ("embedding_head.",),
    "updetr": ("patch_projection.", "feature_head."),
    "aligndet": ("projector.", "target_detector.", "target_projector."),
}


def finetune_detector():
    torch.manual_seed(1)
    return build_detector(FINETUNE)[0]


@pytest.mark.parametrize("method", sorted(METHOD_MODULES))
def test_checkpoint_transfers_with_exactly_the_documented_keys(method, tmp_path):
    torch.manual_seed(0)
    pretrainer, _ = build_pretrainer({"method": method, "embedding_dim": 32}
                                     if method in ("mutdet", "detreg") else {"method": method}, TINY_DETECTOR)
    state = pretrainer.state_dict()
    assert {k.split(".")[0] + "." for k in state} == {"detector.", *METHOD_MODULES[method]}
    path = tmp_path / "epoch_36.pth"
    torch.save({"model": state, "epoch": 36}, path)
    detector = finetune_detector()
    fresh_values = {k: v.clone() for k, v in detector.state_dict().items() if FRESH.match(k)}
    report = load_pretraining_checkpoint(detector, path)

    own = set(detector.state_dict())
    assert set(report["new"]) == {k for k in own if FRESH.match(k)}
    assert set(report["skipped"]) == ({k for k in state if not k.startswith("detector.")}
                                      | {"detector." + k for k in own if FRESH.match(k)})
    assert set(report["loaded"]) == own - set(report["new"])
    loaded = detector.state_dict()
    for key in report["loaded"]:
        assert torch.equal(loaded[key], state["detector." + key]), key  # the online detector, not an EMA copy
    for key, value in fresh_values.items():
        assert torch.equal(loaded[key], value), key


def test_plain_detector_checkpoint_and_ddp_prefix_load_too():
    torch.manual_seed(0)
    source, _, _ = build_detector(dict(TINY_DETECTOR, num_classes=256))
    state = {"module." + k: v for k, v in source.state_dict().items()}
    report = load_pretraining_checkpoint(finetune_detector(), state)
    assert report["skipped"] == sorted(k for k in source.state_dict() if FRESH.match(k))
    assert all(FRESH.match(k) for k in report["new"])


def test_other_detector_variant_is_a_clear_error():
    torch.manual_seed(0)
    pretrainer, _ = build_pretrainer({"method": "detreg", "embedding_dim": 32}, dict(TINY_DETECTOR, ffn_dim=128))
    expected = r"another detector variant.*\n.*ffn.*checkpoint \(128, 32\) vs model \(64, 32\)"
    with pytest.raises(ValueError, match=expected):
        load_pretraining_checkpoint(finetune_detector(), pretrainer.state_dict())


def test_query_count_may_differ():
    torch.manual_seed(0)
    pretrainer, _ = build_pretrainer({"method": "detreg", "embedding_dim": 32}, dict(TINY_DETECTOR, num_queries=8))
    report = load_pretraining_checkpoint(finetune_detector(), pretrainer.state_dict())
    assert "query_embedding.weight" in report["new"] and "detector.query_embedding.weight" in report["skipped"]


def test_pretraining_runs_in_the_training_engine_and_transfers(tmp_path):
    """Two MutDet iterations through ``engine.train`` (default forward, the on_iteration hook), then the
    written checkpoint loads into a fine-tuning detector."""
    from mutdet_core.data.collate import Batch
    from mutdet_core.engine import build_train_loader, split_key, train

    images, mask, targets = make_batch(counts=(3, 2, 1, 0))

    class Tiles(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, key):
            index, _ = split_key(key)
            return images[index], mask[index], targets[index]

    def collate(items):
        return Batch(torch.stack([i for i, _, _ in items]), torch.stack([m for _, m, _ in items]),
                     [t for _, _, t in items])

    torch.manual_seed(0)
    model, criterion = build_pretrainer({"method": "mutdet", "embedding_dim": 32}, TINY_DETECTOR)
    calls = []

    def after_step(model, criterion, iteration):
        calls.append(iteration)
        model.on_iteration(iteration, 2)

    loader = build_train_loader(Tiles(), 2, collate, seed=0, num_workers=0)
    result = train(model, criterion, loader, dict(epochs=1, warmup_iters=1, tensorboard=False, progress_bar=False,
                                                  log_interval=1, checkpoint_epochs=[1]),
                   tmp_path / "run", after_step=after_step)
    assert calls == [1, 2] and result["iteration"] == 2
    report = load_pretraining_checkpoint(finetune_detector(), result["checkpoints"][1])
    assert report["loaded"] and all(FRESH.match(k) for k in report["new"])
