"""AlignDet as released: two augmented views with the same box ids, pairs by box identity, its optimiser."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance, ImageOps

from mutdet_core.data import collate_detection
from mutdet_core.engine import TrainConfig, build_train_loader, train
from mutdet_core.engine.checkpoint import load_checkpoint
from mutdet_core.engine.sampler import split_key
from mutdet_core.models.box_ops import wrap_angle_le90
from mutdet_core.pretraining import build_pretrainer
from mutdet_core.pretraining.aligndet import _instance_ids, box_contrastive_loss
from mutdet_core.pretraining.aligndet_views import apply_color_op, make_view
from mutdet_core.pretraining.method_config import check_method_config, method_train_overrides
from mutdet_core.runs.pretrain import pretrain_train_values

from pretraining_fixtures import TINY_DETECTOR, make_batch

torch.set_num_threads(1)


def _sample(image: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Bilinear value (3,) of a (3, h, w) image at continuous point (x, y), pixel i covering [i, i + 1) (the
    convention of ``F.interpolate(align_corners=False)``)."""
    _, h, w = image.shape
    grid = torch.tensor([[[[x / w * 2 - 1, y / h * 2 - 1]]]], dtype=image.dtype)
    return F.grid_sample(image[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0, 0]


def _frame(box_px: torch.Tensor):
    """Centre (2,), long-side direction (2,), normal (2,) of a pixel (cx, cy, w, h, theta) box."""
    cx, cy, _, _, theta = box_px.tolist()
    d = torch.tensor([math.cos(theta), math.sin(theta)], dtype=torch.float64)
    return torch.tensor([cx, cy], dtype=torch.float64), d, torch.stack([-d[1], d[0]])


def test_two_views_carry_the_same_box_ids_and_their_boxes_stay_on_their_objects():
    images, mask, targets = make_batch(counts=(3, 2), size=(64, 80))
    mask[1, :, 70:] = True  # image 1 is 64 x 70 inside the padded 64 x 80 input
    images[1, :, :, 70:] = 0.0
    torch.manual_seed(0)
    model, _ = build_pretrainer({"method": "aligndet", "view_scales": [0.8, 0.88], "view_flip_prob": 0.5,
                                 "view_color_ops": ["identity"]}, TINY_DETECTOR)
    flips_seen = set()
    for _ in range(4):  # several draws: flipped and unflipped, both scales
        views = model.make_views(images, mask, targets)
        assert [t["instance_ids"].tolist() for t in views[0][2]] == [[0, 1, 2], [3, 4]]
        assert [t["instance_ids"].tolist() for t in views[1][2]] == [[0, 1, 2], [3, 4]]
        for view_images, view_mask, view_targets in views:
            for b in range(2):
                h, w = int((~view_mask[b, :, 0]).sum()), int((~view_mask[b, 0, :]).sum())
                assert view_mask[b, h:].all() and view_mask[b, :, w:].all() and not view_mask[b, :h, :w].any()
                assert (view_images[b, :, h:] == 0).all() and (view_images[b, :, :, w:] == 0).all()
                assert (h, w) in {(51, 64 if b == 0 else 56), (56, 70 if b == 0 else 62)}
                assert torch.equal(view_targets[b]["image_size"], torch.tensor([h, w]))
                flipped = not torch.allclose(view_targets[b]["angles"], targets[b]["angles"], atol=1e-6)
                flips_seen.add(flipped)
                if flipped:
                    assert torch.allclose(view_targets[b]["angles"], wrap_angle_le90(-targets[b]["angles"]),
                                          atol=1e-6)
                scale = torch.tensor([80, 64, 80, 64])
                source = images[b, :, :int((~mask[b, :, 0]).sum()), :int((~mask[b, 0, :]).sum())]
                for k in range(len(targets[b]["boxes"])):
                    src = torch.cat([targets[b]["boxes"][k] * scale, targets[b]["angles"][k:k + 1]]).double()
                    dst = torch.cat([view_targets[b]["boxes"][k] * scale, view_targets[b]["angles"][k:k + 1]]).double()
                    (c_s, d_s, n_s), (c_d, d_d, n_d) = _frame(src), _frame(dst)
                    ratio = dst[2] / src[2]
                    # View pixels on the box's long axis, read back through the two boxes: the view pixel at box
                    # coordinates (u, v) of the view box holds the source image at the same box coordinates of
                    # the source box (mirrored: u -> -u), bilinearly resampled as the resize does. Not to 1e-6:
                    # the box sides scale by sqrt(sx * sy) (mmrotate RResize) while the pixels scale by sx and
                    # sy, which differ by the rounding of the new size (64 x 51 from 80 x 64: 0.8 vs 0.797).
                    for t in (-0.3, 0.0, 0.3):
                        p_d = torch.floor(c_d + t * dst[2] * d_d) + 0.5  # the centre of the pixel holding it
                        u, v = float((p_d - c_d) @ d_d), float((p_d - c_d) @ n_d)
                        p_s = c_s + ((-u if flipped else u) * d_s + v * n_s) / ratio
                        value = view_images[b, :, int(p_d[1]), int(p_d[0])]
                        assert torch.allclose(value, _sample(source, float(p_s[0]), float(p_s[1])), atol=0.03)
    assert flips_seen == {True, False}


def test_views_reject_scales_that_leave_the_canvas_and_unknown_colour_ops():
    images, mask, targets = make_batch(counts=(1,))
    with pytest.raises(ValueError, match="scales must be in"):
        make_view(images, mask, targets, scales=[1.2])
    with pytest.raises(ValueError, match="colour operations"):
        make_view(images, mask, targets, color_ops=["cutout"])
    with pytest.raises(ValueError, match="view_color_ops"):
        check_method_config({"method": "aligndet", "view_color_ops": ["cutout"]})
    with pytest.raises(ValueError, match="max_boxes"):
        check_method_config({"method": "aligndet", "max_boxes": 0})


@pytest.mark.parametrize("op", ["autocontrast", "equalize", "solarize", "color", "contrast", "brightness",
                                "sharpness", "posterize"])
def test_colour_operations_follow_the_released_pil_operations(op):
    """AlignDet's rand_aug.py on PIL: magnitude 7 -> solarize threshold 179, enhance factor 1.36,
    posterize to 4 - int(2.8) = 2 bits."""
    rng = np.random.default_rng(0)
    rgb = (rng.random((24, 32, 3)) * 180 + 40).astype(np.uint8)
    rgb[4:12, 5:20] = (250, 30, 120)
    pil = Image.fromarray(rgb)
    expected = {
        "autocontrast": lambda: ImageOps.autocontrast(pil), "equalize": lambda: ImageOps.equalize(pil),
        "solarize": lambda: ImageOps.solarize(pil, 179), "posterize": lambda: ImageOps.posterize(pil, 2),
        "color": lambda: ImageEnhance.Color(pil).enhance(1.36),
        "contrast": lambda: ImageEnhance.Contrast(pil).enhance(1.36),
        "brightness": lambda: ImageEnhance.Brightness(pil).enhance(1.36),
        "sharpness": lambda: ImageEnhance.Sharpness(pil).enhance(1.36),
    }[op]()
    ours = apply_color_op(torch.from_numpy(rgb).permute(2, 0, 1).contiguous(), op, 7).permute(1, 2, 0).numpy()
    difference = np.abs(ours.astype(int) - np.asarray(expected, dtype=int))
    assert difference.max() <= 2 and difference.mean() < 0.6  # PIL rounds its blends differently by a level


def test_pairing_by_box_identity_on_a_fixed_case():
    """Two images (boxes 0, 1 | 2); each view's queries copy the boxes in another order: the online query
    and the target-view query of the same box get the same id, whatever their positions."""
    torch.manual_seed(0)
    _, criterion = build_pretrainer({"method": "aligndet"}, TINY_DETECTOR)
    boxes = [torch.tensor([[0.3, 0.3, 0.2, 0.1], [0.7, 0.6, 0.3, 0.1]]), torch.tensor([[0.5, 0.4, 0.2, 0.1]])]
    angles = [torch.tensor([0.3, -0.6]), torch.tensor([1.0])]
    targets = [{"labels": torch.tensor([5, 5]), "boxes": boxes[0], "angles": angles[0],
                "instance_ids": torch.tensor([0, 1])},
               {"labels": torch.tensor([7]), "boxes": boxes[1], "angles": angles[1], "instance_ids": torch.tensor([2])}]
    num_queries, num_classes = 12, 256

    def layer(slots: list[dict]) -> dict:
        """Predictions: query q of image b copies box slots[b][q]; the rest sit far away."""
        pred_boxes = torch.tensor([0.05, 0.95, 0.02, 0.01]).repeat(2, num_queries, 1)
        pred_angles = torch.zeros(2, num_queries)
        for b, slot in enumerate(slots):
            for q, k in slot.items():
                pred_boxes[b, q], pred_angles[b, q] = boxes[b][k], angles[b][k]
        return {"pred_logits": torch.zeros(2, num_queries, num_classes), "pred_boxes": pred_boxes,
                "pred_angle_logits": torch.zeros(2, num_queries, 180), "pred_angles": pred_angles}

    online = criterion.pair_indices([layer([{3: 0, 8: 1}, {5: 0}])], targets)[0]
    target = criterion.pair_indices([layer([{10: 1, 0: 0}, {11: 0}])], targets)[0]
    online_ids = _instance_ids(online, [2, 1], num_queries, "cpu").reshape(2, num_queries)
    target_ids = _instance_ids(target, [2, 1], num_queries, "cpu").reshape(2, num_queries)
    assert online_ids[0, 3] == target_ids[0, 0] == 0 and online_ids[0, 8] == target_ids[0, 10] == 1
    assert online_ids[1, 5] == target_ids[1, 11] == 2


def test_box_without_a_key_uses_its_online_queries_as_released():
    torch.manual_seed(0)
    online, target = torch.randn(3, 8), torch.randn(2, 8)
    online_ids, target_ids = torch.tensor([0, 1, 1]), torch.tensor([0, -1])
    q, k = F.normalize(online, dim=-1), F.normalize(target, dim=-1)
    everything, ids = torch.cat([q, k]), torch.cat([online_ids, target_ids])

    def box_loss(box, queries, keys):
        negatives = everything[ids != box]
        return torch.stack([-torch.log_softmax(torch.cat([(a @ b)[None], negatives @ a]) / 0.5, 0)[0]
                            for a in queries for b in keys]).mean()

    expected = (box_loss(0, q[:1], k[:1]) + box_loss(1, q[1:], q[1:])) / 2
    assert torch.allclose(box_contrastive_loss(online, online_ids, target, target_ids, 0.5, "query"), expected,
                          atol=1e-5)
    skipped = box_contrastive_loss(online, online_ids, target, target_ids, 0.5, "skip")
    assert torch.allclose(skipped, box_loss(0, q[:1], k[:1]), atol=1e-5)


def test_max_boxes_cuts_the_targets_of_both_views():
    images, mask, targets = make_batch(counts=(5, 2))
    torch.manual_seed(0)
    model, criterion = build_pretrainer({"method": "aligndet", "max_boxes": 3}, TINY_DETECTOR)
    out = model(images, mask, targets)
    assert [len(t["labels"]) for t in out["online_targets"]] == [3, 2]
    assert [t["instance_ids"].tolist() for t in out["target_view"]["targets"]] == [[0, 1, 2], [3, 4]]
    assert all(len(t["embeddings"]) == len(t["labels"]) for t in out["online_targets"])
    losses = criterion(out, targets)
    assert torch.isfinite(losses["loss_contrastive"]) and torch.isfinite(losses["loss_cls"])
    # absent: half the queries, as AlignDet's configs (50 of 100 DETR queries, 150 of 300 Deformable DETR ones)
    assert build_pretrainer({"method": "aligndet"}, TINY_DETECTOR)[0].max_boxes == TINY_DETECTOR["num_queries"] // 2
    assert build_pretrainer({"method": "aligndet", "max_boxes": None}, TINY_DETECTOR)[0].max_boxes is None


class _Samples(torch.utils.data.Dataset):
    """Two synthetic pseudo-labelled samples as ``TileDetectionDataset`` returns them."""

    def __init__(self):
        images, _, targets = make_batch(counts=(3, 2), size=(64, 64))
        self.samples = []
        for image, target in zip(images, targets):
            px = torch.cat([target["boxes"] * 64, target["angles"][:, None]], 1).double().numpy()
            self.samples.append({"image": image, "obbs": px, "labels": target["labels"].numpy()})

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, key):
        return dict(self.samples[split_key(key)[0]])


def test_released_optimiser_settings_reach_the_optimiser_in_a_cpu_training_step(tmp_path, monkeypatch):
    method_cfg = {"method": "aligndet", "projector_dim": 16}
    shared = {"epochs": 1, "batch_size": 2, "lr": 1e-4, "weight_decay": 1e-5, "clip_max_norm": 35.0,
              "warmup_iters": 500, "num_workers": 0, "tensorboard": False, "progress_bar": False}
    values = pretrain_train_values(method_cfg, shared)
    # lr 2e-4 is for 64 images a step (auto_scale_lr base_batch_size 64, linear): 2 images -> 6.25e-6
    assert method_train_overrides(method_cfg, 64) == {"lr": 2e-4, "weight_decay": 1e-4, "clip_max_norm": 0.1,
                                                      "warmup_iters": 0}
    assert values["lr"] == pytest.approx(2e-4 * 2 / 64) and values["weight_decay"] == 1e-4
    assert pretrain_train_values(method_cfg, shared, world_size=4)["lr"] == pytest.approx(2.5e-5)  # MutDet's 8
    assert pretrain_train_values(method_cfg, dict(shared, batch_size=8), world_size=8)["lr"] == pytest.approx(2e-4)
    assert pretrain_train_values(dict(method_cfg, optimizer="shared"), shared) == shared
    assert pretrain_train_values({"method": "mutdet"}, shared) == shared
    clip_norms = []
    real_clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(params, max_norm, *args, **kwargs):
        clip_norms.append(max_norm)
        return real_clip(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    torch.manual_seed(0)
    model, criterion = build_pretrainer(method_cfg, TINY_DETECTOR)
    cfg = TrainConfig.from_dict(values)
    loader = build_train_loader(_Samples(), cfg.batch_size, collate_detection, seed=0, num_workers=0)
    result = train(model, criterion, loader, cfg, tmp_path, "cpu",
                   after_step=lambda m, c, it: m.on_iteration(it, len(loader) * cfg.epochs))
    assert result["iteration"] == 1 and clip_norms == [0.1]
    groups = {g["name"]: g for g in load_checkpoint(tmp_path / "last.pth")["optimizer"]["param_groups"]}
    assert groups["default"]["initial_lr"] == pytest.approx(6.25e-6) and groups["default"]["weight_decay"] == 1e-4
    with open(tmp_path / "losses.csv") as f:  # the lr of the step itself: no warm-up from lr / 3
        assert float(next(csv.DictReader(f))["lr"]) == pytest.approx(6.25e-6)
    assert groups["lr_mult"]["initial_lr"] == pytest.approx(6.25e-7)  # sampling offsets / reference points x 0.1
    assert json.loads((tmp_path / "train_config.json").read_text())["clip_max_norm"] == 0.1
