"""SetCriterion of the ARS-DETR family (mutdet_core.models training side)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mutdet_core.models.angle_coder import build_angle_coder
from mutdet_core.models.box_ops import aspect_ratio_weight, aspect_ratios, inverse_sigmoid
from mutdet_core.models.criterion import (DEFAULT_WEIGHTS, SetCriterion, build_criterion, expand_weight_dict,
                                          sigmoid_focal_loss)
from mutdet_core.models.denoising import DenoisingGenerator
from test_models_training_side_helpers import make_targets, real_targets, stage

C, Q, L = 4, 20, 3


def full_outputs(batch, coder, dn_pad=None, seed=0, tokens=50):
    g = torch.Generator().manual_seed(seed)
    bins = coder.num_bins
    out = stage(batch, Q, bins, coder, g)
    out["aux_outputs"] = [stage(batch, Q, bins, coder, g) for _ in range(L - 1)]
    out["enc_outputs"] = stage(batch, tokens, bins, coder, g)
    out["enc_outputs"]["topk_indices"] = torch.arange(Q).expand(batch, Q)
    out["dn_outputs"] = None
    if dn_pad is not None:
        out["dn_outputs"] = stage(batch, dn_pad[0], bins, coder, g, leading=(L,))
        out["dn_outputs"]["dn_meta"] = dn_pad[1]
    return out


def ars_criterion(num_decoder_layers=None):
    return build_criterion(C, build_angle_coder("arcsl"), aspect_ratio_weighting=True,
                           num_decoder_layers=num_decoder_layers)


def test_loss_keys_and_weights_follow_the_contract():
    criterion = ars_criterion()
    targets = make_targets([3, 5])
    dn_meta = {"pad_size": 2 * 5 * 20, "num_groups": 20, "max_gts": 5}
    losses = criterion(full_outputs(2, criterion.angle_coder, (dn_meta["pad_size"], dn_meta)), targets)
    base = ["loss_cls", "loss_bbox", "loss_iou", "loss_angle"]
    expected = set(base) | {f"{k}_{i}" for k in base for i in range(L - 1)} | {f"enc_{k}" for k in base}
    expected |= {f"dn_{k}" for k in base} | {f"dn_{k}_{i}" for k in base for i in range(L - 1)}
    assert set(losses) == expected
    for key, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), key
        base_key = key.removeprefix("enc_").removeprefix("dn_").rstrip("_0123456789")
        assert criterion.weight_dict[key] == DEFAULT_WEIGHTS[base_key]
    assert criterion.weight_dict["dn_loss_iou_1"] == 5.0 and criterion.weight_dict["enc_loss_angle"] == 2.0
    total = criterion.total_loss(losses)
    assert torch.allclose(total, sum(criterion.weight_dict[k] * v for k, v in losses.items()))
    # Expanded up front when the depth is known, with the same keys and weights.
    assert ars_criterion(num_decoder_layers=L).weight_dict == criterion.weight_dict
    assert expand_weight_dict(DEFAULT_WEIGHTS, 6)["loss_bbox_4"] == 2.0


def test_rotated_variant_keys():
    coder = build_angle_coder("regression")
    criterion = build_criterion(C, coder, aspect_ratio_weighting=False, box_loss="rotated_iou")
    losses = criterion(full_outputs(2, coder), make_targets([2, 4]))
    assert "loss_angle" not in losses
    assert {"loss_cls", "loss_bbox", "loss_iou", "enc_loss_iou", "loss_iou_1"} <= set(losses)
    with pytest.raises(ValueError, match="CSL"):
        SetCriterion(C, criterion.matcher, coder, box_loss="giou_hbb")


def test_zero_targets_give_finite_losses_and_gradients():
    criterion = ars_criterion()
    outputs = full_outputs(2, criterion.angle_coder)
    logits = outputs["pred_logits"].requires_grad_(True)
    losses = criterion(outputs, make_targets([0, 0]))
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_bbox"] == 0 and losses["loss_iou"] == 0 and losses["loss_angle"] == 0
    # every query is background: focal loss with an all-zero target, normalised by max(num_pos, 1) = 1
    assert torch.allclose(losses["loss_cls"], sigmoid_focal_loss(logits, torch.zeros_like(logits)).sum())
    criterion.total_loss(losses).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # the DN generator yields nothing for such a batch, so there are no dn_ losses
    assert DenoisingGenerator(C).train()(make_targets([0, 0]), Q) is None


def perfect_outputs(targets, coder, queries=Q, seed=0):
    """Outputs whose query perm_b[j] reproduces target j exactly; the other queries are confident background."""
    g = torch.Generator().manual_seed(seed)
    batch, bins = len(targets), coder.num_bins
    logits = torch.full((batch, queries, C), -12.0)
    boxes = torch.rand(batch, queries, 4, generator=g) * 0.5 + 0.2
    angle_logits = torch.randn(batch, queries, bins, generator=g)
    perms = []
    for b, t in enumerate(targets):
        perm = torch.randperm(queries, generator=g)[: len(t["labels"])]
        perms.append(perm)
        logits[b, perm, t["labels"]] = 12.0
        boxes[b, perm] = t["boxes"]
        if bins == 1:
            angle_logits[b, perm] = coder.encode(t["angles"])
        else:
            soft = coder.encode(t["angles"], aspect_ratios(t["boxes"]))
            angle_logits[b, perm] = torch.logit(soft.clamp(1e-6, 1 - 1e-6))
    return {"pred_logits": logits, "pred_boxes": boxes, "pred_angle_logits": angle_logits,
            "pred_angles": coder.decode(angle_logits)}, perms


def test_perfect_predictions_give_minimal_losses():
    criterion = ars_criterion()
    targets = make_targets([4, 6], seed=3)
    outputs, perms = perfect_outputs(targets, criterion.angle_coder)
    losses, indices = criterion(outputs, targets, return_indices=True)
    for (pred_idx, gt_idx), perm in zip(indices["last"], perms):
        assert torch.equal(pred_idx[gt_idx.argsort()], perm)
    assert criterion.last_indices is indices["last"]
    assert losses["loss_bbox"] < 1e-6 and losses["loss_iou"] < 1e-6 and losses["loss_cls"] < 1e-6
    # BCE against a soft label is minimal (= its binary entropy) when sigmoid(logit) equals the label.
    entropy, weights = [], []
    for t in targets:
        r = aspect_ratios(t["boxes"])
        y = criterion.angle_coder.encode(t["angles"], r).clamp(1e-6, 1 - 1e-6)
        entropy.append(-(y * y.log() + (1 - y) * (1 - y).log()).sum(-1))
        weights.append(aspect_ratio_weight(r))
    minimum = (torch.cat(entropy) * torch.cat(weights)).sum() / (10 * 180)
    assert losses["loss_angle"].item() == pytest.approx(minimum.item(), rel=1e-3)
    # any perturbation of the angle logits raises the angle loss
    outputs["pred_angle_logits"] = outputs["pred_angle_logits"] + 0.5 * torch.randn_like(outputs["pred_angle_logits"])
    assert criterion(outputs, targets)["loss_angle"] > losses["loss_angle"]


def test_perfect_predictions_rotated_variant():
    coder = build_angle_coder("regression")
    criterion = build_criterion(C, coder, aspect_ratio_weighting=False, box_loss="rotated_iou")
    targets = make_targets([5, 2], seed=4)
    targets = [dict(t, angles=t["angles"].clamp(-1.5, 1.5)) for t in targets]
    outputs, _ = perfect_outputs(targets, coder)
    losses = criterion(outputs, targets)
    assert losses["loss_bbox"] < 1e-4 and losses["loss_iou"] < 1e-4 and losses["loss_cls"] < 1e-6


def test_classification_and_angle_normalisation():
    criterion = ars_criterion()
    targets = make_targets([3, 2], seed=5)
    outputs = full_outputs(2, criterion.angle_coder, seed=6)
    losses, indices = criterion(outputs, targets, return_indices=True)
    onehot = torch.zeros_like(outputs["pred_logits"])
    src_ang, tgt_ang, w = [], [], []
    for b, (i, j) in enumerate(indices["last"]):
        onehot[b, i, targets[b]["labels"][j]] = 1
        r = aspect_ratios(targets[b]["boxes"][j])
        src_ang.append(outputs["pred_angle_logits"][b, i])
        tgt_ang.append(criterion.angle_coder.encode(targets[b]["angles"][j], r))
        w.append(aspect_ratio_weight(r))
    focal = sigmoid_focal_loss(outputs["pred_logits"], onehot).sum() / 5
    assert torch.allclose(losses["loss_cls"], focal, rtol=1e-5)
    bce = F.binary_cross_entropy_with_logits(torch.cat(src_ang), torch.cat(tgt_ang), reduction="none").sum(-1)
    assert torch.allclose(losses["loss_angle"], (bce * torch.cat(w)).sum() / (5 * 180), rtol=1e-5)
    # encoder stage is class-agnostic: its matches use label 0 for every target
    enc_onehot = torch.zeros_like(outputs["enc_outputs"]["pred_logits"])
    for b, (i, _) in enumerate(indices["enc"]):
        enc_onehot[b, i, 0] = 1
    enc_focal = sigmoid_focal_loss(outputs["enc_outputs"]["pred_logits"], enc_onehot).sum() / 5
    assert torch.allclose(losses["enc_loss_cls"], enc_focal, rtol=1e-5)


def test_encoder_matching_is_class_agnostic():
    criterion = ars_criterion()
    targets = make_targets([6], seed=7)
    outputs, _ = perfect_outputs(targets, criterion.angle_coder)
    enc, perms = perfect_outputs([dict(targets[0], labels=torch.zeros(6, dtype=torch.int64))],
                                 criterion.angle_coder, queries=40, seed=8)
    outputs["enc_outputs"] = enc
    losses, indices = criterion(outputs, targets, return_indices=True)
    pred_idx, gt_idx = indices["enc"][0]
    assert torch.equal(pred_idx[gt_idx.argsort()], perms[0])
    assert losses["enc_loss_cls"] < 1e-6 and losses["enc_loss_bbox"] < 1e-6


def test_dn_losses_positives_regress_all_slots_classify():
    torch.manual_seed(0)
    criterion = ars_criterion()
    targets = make_targets([3, 5], seed=9)
    dn = DenoisingGenerator(C, hidden_dim=8).train()(targets, Q)
    meta = dn["dn_meta"]
    pad, groups, m = meta["pad_size"], meta["num_groups"], meta["max_gts"]
    outputs = full_outputs(2, criterion.angle_coder, (pad, meta), seed=10)
    dn_out = outputs["dn_outputs"]
    # Positive slot g*2M + i holds GT i exactly in the last layer.
    for b, t in enumerate(targets):
        n = len(t["labels"])
        for g in range(groups):
            dn_out["pred_boxes"][-1, b, g * 2 * m: g * 2 * m + n] = t["boxes"]
    losses, indices = criterion(outputs, targets, return_indices=True)
    assert losses["dn_loss_bbox"] < 1e-6 and losses["dn_loss_iou"] < 1e-6
    assert losses["dn_loss_bbox_0"] > 0.01  # other layers are random
    assert len(indices["dn"][1][0]) == groups * 5 and indices["dn"][0][0].tolist()[:3] == [0, 1, 2]
    # Negative and padding slots change only the classification loss.
    before = {k: v.clone() for k, v in losses.items()}
    neg_slot = m + 1  # negative of GT 1 in group 0
    dn_out["pred_logits"][-1, 0, neg_slot] += 3.0
    dn_out["pred_boxes"][-1, 0, neg_slot] = 0.9
    dn_out["pred_boxes"][-1, 0, 4] = 0.1  # padding slot of image 0 (3 targets, M = 5)
    after = criterion(outputs, targets)
    assert after["dn_loss_cls"] > before["dn_loss_cls"]
    assert torch.equal(after["dn_loss_bbox"], before["dn_loss_bbox"])
    # normalised by G * num_gts: duplicating the targets' groups does not scale the box loss
    num_pos = groups * 8
    dn_logits = dn_out["pred_logits"][-1]
    onehot = torch.zeros_like(dn_logits)
    for b, (i, j) in enumerate(indices["dn"]):
        onehot[b, i, targets[b]["labels"][j]] = 1
    assert torch.allclose(after["dn_loss_cls"], sigmoid_focal_loss(dn_logits, onehot).sum() / num_pos, rtol=1e-5)


@pytest.mark.parametrize("variant", ["ars_detr", "rotated_ddetr"])
def test_loss_decreases_with_gradient_steps_on_real_targets(shared_data, variant):
    t = real_targets(shared_data / "dota_sample" / "labelTxt" / "P1888.txt", size=800)
    t["labels"] = t["labels"] % C
    t = {k: t[k] for k in ("labels", "boxes", "angles")}
    targets = [t, make_targets([5], seed=11)[0]]
    if variant == "ars_detr":
        coder, criterion = build_angle_coder("arcsl"), ars_criterion()
    else:
        coder = build_angle_coder("regression")
        criterion = build_criterion(C, coder, aspect_ratio_weighting=False, box_loss="rotated_iou")
    queries = len(t["labels"]) + 20
    g = torch.Generator().manual_seed(12)
    logits = torch.randn(2, queries, C, generator=g).requires_grad_(True)
    boxes_unact = inverse_sigmoid(torch.rand(2, queries, 4, generator=g) * 0.6 + 0.2).requires_grad_(True)
    angle_logits = torch.randn(2, queries, coder.num_bins, generator=g).requires_grad_(True)
    optimizer = torch.optim.Adam([logits, boxes_unact, angle_logits], lr=0.05)

    def total():
        outputs = {"pred_logits": logits, "pred_boxes": boxes_unact.sigmoid(), "pred_angle_logits": angle_logits,
                   "pred_angles": coder.decode(angle_logits)}
        return criterion.total_loss(criterion(outputs, targets))

    first = total().item()
    for _ in range(40):
        optimizer.zero_grad()
        loss = total()
        loss.backward()
        optimizer.step()
    assert math.isfinite(first) and total().item() < 0.5 * first


def test_num_pos_is_averaged_over_an_initialised_process_group(tmp_path):
    import torch.distributed as dist

    criterion = ars_criterion()
    targets = make_targets([3, 4], seed=13)
    outputs = full_outputs(2, criterion.angle_coder, seed=14)
    reference = criterion(outputs, targets)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        synced = criterion(outputs, targets)
    finally:
        dist.destroy_process_group()
    for key in reference:
        assert torch.allclose(reference[key], synced[key]), key


def test_bad_targets_are_rejected_before_matching():
    criterion = ars_criterion()
    outputs = full_outputs(1, criterion.angle_coder)
    bad = make_targets([2])
    bad[0]["labels"][1] = C
    with pytest.raises(ValueError, match="labels must be in"):
        criterion(outputs, bad)
    with pytest.raises(KeyError, match="angles"):
        criterion(outputs, [{"labels": torch.zeros(1, dtype=torch.int64), "boxes": torch.rand(1, 4)}])


def to_device(obj, device):
    if torch.is_tensor(obj):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_device(v, device) for v in obj]
    return obj


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_training_side_runs_on_device(device):
    """Denoising -> matcher -> criterion -> backward with every tensor on ``device`` (CUDA when present)."""
    criterion = ars_criterion().to(device)
    generator = DenoisingGenerator(C, hidden_dim=8).train().to(device)
    targets = [{k: v.to(device) for k, v in t.items()} for t in make_targets([4, 1], seed=15)]
    dn = generator(targets, Q)
    outputs = full_outputs(2, criterion.angle_coder, (dn["dn_meta"]["pad_size"], dn["dn_meta"]), seed=16)
    outputs = to_device(outputs, device)
    outputs["pred_logits"].requires_grad_(True)
    losses, indices = criterion(outputs, targets, return_indices=True)
    assert all(v.device.type == device for v in losses.values())
    assert all(i.device.type == device for i, _ in indices["last"] + indices["dn"])
    assert dn["attn_mask"].device.type == device and dn["query_content"].device.type == device
    criterion.total_loss(losses).backward()
    assert torch.isfinite(outputs["pred_logits"].grad).all()


@pytest.mark.parametrize("variant", ["ars_detr", "rotated_ddetr"])
def test_integration_with_the_detector_outputs(variant):
    """The detector-core's model output dict feeds this criterion (docs/DETECTOR_CONTRACT.md)."""
    from mutdet_core.models.detector import build_detector

    torch.manual_seed(0)
    model, criterion, _ = build_detector(dict(variant=variant, num_classes=C, backbone={"name": "tiny"}, d_model=32,
                                              n_heads=4, ffn_dim=64, num_encoder_layers=1, num_decoder_layers=2,
                                              num_queries=20))
    targets = make_targets([3, 0], seed=17)
    losses = criterion(model.train()(torch.randn(2, 3, 96, 96), targets=targets), targets)
    assert {"loss_cls", "loss_bbox", "loss_iou", "loss_cls_0", "enc_loss_cls"} <= set(losses)
    assert ("dn_loss_bbox" in losses) == (variant == "ars_detr")
    total = criterion.total_loss(losses)
    total.backward()
    assert torch.isfinite(total)
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
