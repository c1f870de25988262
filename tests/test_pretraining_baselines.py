"""UP-DETR and AlignDet on ARS-DETR: query patches, query conditioning, two views, EMA target, losses."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from mutdet_core.geometry import obb2poly
from mutdet_core.pretraining import build_pretrainer
from mutdet_core.pretraining.aligndet import augment_view, box_contrastive_loss
from mutdet_core.pretraining.updetr import group_attention_mask, patch_targets, random_query_patches

from pretraining_fixtures import TINY_DETECTOR, make_batch, total_loss, train_steps

torch.set_num_threads(1)


# ------------------------------------------------------------------------------ UP-DETR
def test_random_query_patches_lie_in_the_valid_region_and_are_le90():
    mask = torch.zeros(2, 64, 96, dtype=torch.bool)
    mask[1, 40:, :] = True  # image 1 is 40 x 60 inside the padded 64 x 96 input
    mask[1, :, 60:] = True
    torch.manual_seed(0)
    patches = random_query_patches(mask, 10, min_pixels=8)
    for xyxy, (h, w) in zip(patches, [(64, 96), (40, 60)]):
        assert xyxy.shape == (10, 4)
        assert (xyxy[:, 0] >= 0).all() and (xyxy[:, 2] <= w).all() and (xyxy[:, 3] <= h).all()
        assert ((xyxy[:, 2] - xyxy[:, 0]) >= 8).all() and ((xyxy[:, 3] - xyxy[:, 1]) >= 8).all()
    targets = patch_targets(patches, 64, 96)
    for xyxy, t in zip(patches, targets):
        boxes = t["boxes"] * torch.tensor([96, 64, 96, 64])
        assert (boxes[:, 2] >= boxes[:, 3]).all()  # le90: w >= h
        # the oriented box covers exactly the patch
        polys = np.asarray(obb2poly(torch.cat([boxes, t["angles"][:, None]], 1).double().numpy())).reshape(-1, 4, 2)
        assert np.allclose(polys.min(1), xyxy[:, :2].numpy(), atol=1e-3)
        assert np.allclose(polys.max(1), xyxy[:, 2:].numpy(), atol=1e-3)
        assert (t["labels"] == 0).all()


def test_group_attention_mask_blocks_other_patches():
    mask = group_attention_mask(12, 3, "cpu")
    assert not mask[0, 3] and mask[0, 4] and not mask[11, 8] and mask[11, 7]


def test_patch_features_condition_the_matching_queries_through_a_temporary_hook():
    torch.manual_seed(0)
    model, _ = build_pretrainer({"method": "updetr", "num_patches": 3}, TINY_DETECTOR)
    model.eval()
    images, mask, _ = make_batch()
    torch.manual_seed(1)
    conditioned = model(images, mask)
    assert not model.detector.decoder._forward_pre_hooks  # removed after the call
    assert conditioned["feature_predictions"].shape[:3] == (2, 2, 12)
    plain = model.detector(images, mask)
    assert not torch.allclose(conditioned["hs"], plain["hs"], atol=1e-4)
    with torch.no_grad():  # a zero projection adds nothing: the plain detector again
        model.patch_projection.weight.zero_()
        model.patch_projection.bias.zero_()
    torch.manual_seed(1)
    assert torch.allclose(model(images, mask)["hs"], plain["hs"], atol=1e-6)


def test_updetr_patch_features_come_from_the_frozen_backbone_crop():
    torch.manual_seed(0)
    model, _ = build_pretrainer({"method": "updetr", "num_patches": 2, "patch_size": 32}, TINY_DETECTOR)
    images, _, _ = make_batch(counts=(3,))
    patches = torch.tensor([[8.0, 4.0, 40.0, 36.0], [24.0, 28.0, 56.0, 60.0]])  # 32 x 32 pixels each
    features = model.patch_features(images, [patches])[0]
    assert not features.requires_grad and features.shape == (2, model.detector.backbone.num_channels[-1])
    direct = torch.cat([model.detector.backbone(images[:, :, y0:y1, x0:x1])[-1].mean(dim=(2, 3))
                        for x0, y0, x1, y1 in patches.int().tolist()])
    similarity = F.cosine_similarity(features[:, None], direct[None], dim=-1)  # (crop, direct)
    # RoIAlign's 2x2 sub-samples blur slightly: each feature is close to its own crop, not to the other one
    assert (similarity.diagonal() > 0.95).all()
    assert (similarity.diagonal() > similarity.flip(1).diagonal() + 0.05).all()


def test_updetr_losses_go_down():
    torch.manual_seed(0)
    model, criterion = build_pretrainer({"method": "updetr", "num_patches": 4}, TINY_DETECTOR)
    history = train_steps(model, criterion, make_batch(), steps=30)
    assert {"loss_feature", "loss_feature_0", "loss_cls", "dn_loss_bbox"} <= set(history[0])
    assert np.mean([h["total"] for h in history[-4:]]) < 0.8 * np.mean([h["total"] for h in history[:4]])
    assert np.mean([h["loss_feature"] for h in history[-4:]]) < 0.6 * np.mean([h["loss_feature"] for h in history[:4]])


# ------------------------------------------------------------------------------ AlignDet
def test_second_view_keeps_boxes_on_their_objects():
    images, mask, targets = make_batch(counts=(3, 2), size=(64, 80))
    mask[1, :, 70:] = True  # image 1 is padded on the right
    images[1, :, :, 70:] = 0.0
    torch.manual_seed(0)
    view, view_targets = augment_view(images, mask, targets, flip_prob=1.0, color_jitter=0.0)
    assert torch.equal(view[1, :, :, 70:], images[1, :, :, 70:])  # padding untouched
    for b in range(2):
        for box, flipped in zip(targets[b]["boxes"], view_targets[b]["boxes"]):
            x, y = int(box[0] * 80), int(box[1] * 64)
            fx, fy = int(flipped[0] * 80), int(flipped[1] * 64)
            assert torch.allclose(images[b, :, y, x], view[b, :, fy, fx], atol=1e-5)
        assert torch.allclose(view_targets[b]["angles"], targets[b]["angles"], atol=1e-6)  # two flips: -(-theta)
    torch.manual_seed(0)
    view, view_targets = augment_view(images, mask, targets, flip_prob=0.0, color_jitter=0.4)
    assert torch.equal(view_targets[0]["boxes"], targets[0]["boxes"]) and not torch.equal(view, images)


def test_box_contrastive_loss_matches_alignDet_definition():
    torch.manual_seed(0)
    online, target = torch.randn(7, 8), torch.randn(6, 8)
    online_ids, target_ids = torch.tensor([0, 1, -1, 0, 2, -1, 3]), torch.tensor([1, 0, 0, -1, 2, -1])
    q_all, k_all = F.normalize(online, dim=-1), F.normalize(target, dim=-1)
    everything, ids = torch.cat([q_all, k_all]), torch.cat([online_ids, target_ids])
    per_box = []
    for box in (0, 1, 2):  # box 3 has no key in the target view: skipped
        losses = []
        for q in q_all[online_ids == box]:
            for k in k_all[target_ids == box]:
                logits = torch.cat([(q @ k)[None], everything[ids != box] @ q]) / 0.5
                losses.append(-torch.log_softmax(logits, 0)[0])
        per_box.append(torch.stack(losses).mean())
    expected = torch.stack(per_box).mean()
    assert torch.allclose(box_contrastive_loss(online, online_ids, target, target_ids, 0.5), expected, atol=1e-5)


def test_ema_momentum_schedule_and_update():
    torch.manual_seed(0)
    model, _ = build_pretrainer({"method": "aligndet"}, TINY_DETECTOR)
    assert all(not p.requires_grad for p in model.target_detector.parameters())
    with torch.no_grad():
        for p in model.detector.parameters():
            p.add_(1.0)
    online = model.detector.encoder.level_embed.detach().clone()
    before = model.target_detector.encoder.level_embed.detach().clone()
    model.on_iteration(0, 100)
    assert model.momentum == 0.996
    assert torch.allclose(model.target_detector.encoder.level_embed, 0.996 * before + 0.004 * online)
    assert torch.equal(model.target_detector.query_embedding.weight, model.detector.query_embedding.weight)
    model.on_iteration(50, 100)
    assert math.isclose(model.momentum, 0.998)
    model.on_iteration(100, 100)
    assert model.momentum == 1.0
    model.train()
    assert model.detector.training and not model.target_detector.training


def test_aligndet_losses_go_down():
    torch.manual_seed(0)
    model, criterion = build_pretrainer({"method": "aligndet"}, TINY_DETECTOR)
    # 50 steps, not 30: both views are re-augmented every step (scale jitter, flip, colour operation)
    history = train_steps(model, criterion, make_batch(), steps=50)
    assert "loss_contrastive" in history[0] and "enc_loss_cls" in history[0]
    assert np.mean([h["total"] for h in history[-4:]]) < 0.8 * np.mean([h["total"] for h in history[:4]])


def test_aligndet_contrast_pulls_matched_boxes_together():
    """With the target equal to the online network (momentum 0) and identical views, the box-level InfoNCE
    alone must fall: matched queries of different boxes become distinguishable."""
    torch.manual_seed(0)
    model, criterion = build_pretrainer({"method": "aligndet", "base_momentum": 0.0, "view_flip_prob": 0.0,
                                         "view_color_jitter": 0.0, "view_scales": [1.0],
                                         "view_color_ops": ["identity"]}, dict(TINY_DETECTOR, dropout=0.0))
    criterion.weight_dict = {"loss_contrastive": 1.0}  # train on the contrast only
    history = train_steps(model, criterion, make_batch(), steps=30, total_iterations=10**9)  # momentum stays 0
    assert np.mean([h["loss_contrastive"] for h in history[-4:]]) < 0.9 * history[0]["loss_contrastive"]


def test_baselines_handle_images_without_boxes():
    for method in ("updetr", "aligndet"):
        torch.manual_seed(0)
        model, criterion = build_pretrainer({"method": method}, TINY_DETECTOR)
        images, mask, targets = make_batch(counts=(0, 2))
        losses = criterion(model(images, mask, targets), targets)
        assert all(torch.isfinite(v) for v in losses.values()), method
        total_loss(losses, criterion.weight_dict).backward()
