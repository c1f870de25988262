"""Hungarian matcher and denoising generator (mutdet_core.models training side)."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from mutdet_core.models.angle_coder import build_angle_coder
from mutdet_core.models.box_ops import aspect_ratio_weight, aspect_ratios, box_cxcywh_to_xyxy, generalized_box_iou
from mutdet_core.models.denoising import DenoisingGenerator, build_dn_attn_mask, split_dn_outputs
from mutdet_core.models.matcher import HungarianMatcher, bce_mean_cost, build_matcher
from mutdet_core.models.rotated_iou_loss import pairwise_rotated_box_iou
from test_models_training_side_helpers import real_targets

NUM_CLASSES = 5


def random_targets(counts, seed=0, num_classes=NUM_CLASSES):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in counts:
        wh = torch.rand(n, 2, generator=g) * 0.2 + 0.02
        out.append({
            "labels": torch.randint(0, num_classes, (n,), generator=g),
            "boxes": torch.cat([torch.rand(n, 2, generator=g) * 0.6 + 0.2, wh], 1),
            "angles": (torch.rand(n, generator=g) - 0.5) * math.pi,
        })
    return out


def random_outputs(batch, queries, num_bins, seed=0, num_classes=NUM_CLASSES):
    g = torch.Generator().manual_seed(seed)
    angle_logits = torch.randn(batch, queries, num_bins, generator=g)
    coder = build_angle_coder("regression" if num_bins == 1 else "arcsl")
    return {
        "pred_logits": torch.randn(batch, queries, num_classes, generator=g),
        "pred_boxes": torch.rand(batch, queries, 4, generator=g) * 0.5 + 0.1,
        "pred_angle_logits": angle_logits,
        "pred_angles": coder.decode(angle_logits),
    }


VARIANTS = {
    "ars_detr": dict(kind="arcsl", box_cost="giou_hbb", arw=True, quirk=False),
    "ars_detr_released_l1_quirk": dict(kind="arcsl", box_cost="giou_hbb", arw=True, quirk=True),
    "csl_detr": dict(kind="csl", box_cost="giou_hbb", arw=False, quirk=False),
    "rotated_ddetr": dict(kind="regression", box_cost="rotated_iou", arw=False, quirk=False),
}


def make_matcher(variant: str) -> HungarianMatcher:
    v = VARIANTS[variant]
    return build_matcher(build_angle_coder(v["kind"]), aspect_ratio_weighting=v["arw"], box_cost=v["box_cost"],
                         released_l1_cost_quirk=v["quirk"])


# ---------------------------------------------------------------- matcher
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_matcher_batched_equals_per_image_and_handles_empty_image(variant):
    matcher = make_matcher(variant)
    targets = random_targets([5, 0, 12, 40], seed=1)
    outputs = random_outputs(4, 30, matcher.angle_coder.num_bins, seed=2)
    batched = matcher(outputs, targets)
    assert len(batched) == 4
    for b, (pred_idx, gt_idx) in enumerate(batched):
        single = matcher({k: v[b:b + 1] for k, v in outputs.items()}, [targets[b]])[0]
        assert torch.equal(pred_idx, single[0]) and torch.equal(gt_idx, single[1])
        n = len(targets[b]["labels"])
        assert pred_idx.dtype == gt_idx.dtype == torch.int64
        assert len(pred_idx) == min(30, n)
        assert len(set(pred_idx.tolist())) == len(pred_idx) == len(set(gt_idx.tolist()))
        assert all(0 <= j < n for j in gt_idx.tolist())
        if n <= 30:
            assert sorted(gt_idx.tolist()) == list(range(n))  # every target is matched
    assert batched[1][0].numel() == 0 and batched[1][1].numel() == 0
    # 40 targets but 30 queries: every query is used once
    assert sorted(batched[3][0].tolist()) == list(range(30))


def test_matcher_all_images_empty():
    matcher = make_matcher("ars_detr")
    indices = matcher(random_outputs(2, 10, 180), random_targets([0, 0]))
    assert [(len(i), len(j)) for i, j in indices] == [(0, 0), (0, 0)]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_matching_is_optimal_brute_force(variant):
    matcher = make_matcher(variant)
    for seed in range(3):
        target = random_targets([4], seed=10 + seed)[0]
        outputs = random_outputs(1, 6, matcher.angle_coder.num_bins, seed=20 + seed)
        pred_idx, gt_idx = matcher(outputs, [target])[0]
        cost = matcher.cost_matrix({k: v[0] for k, v in outputs.items()}, target)
        found = cost[pred_idx, gt_idx].sum().item()
        best = min(sum(cost[q, j].item() for j, q in enumerate(perm)) for perm in itertools.permutations(range(6), 4))
        assert found == pytest.approx(best, abs=1e-5)


def test_cost_matrix_components_and_weights():
    coder = build_angle_coder("arcsl")
    target = random_targets([3], seed=4)[0]
    outputs = {k: v[0] for k, v in random_outputs(1, 7, 180, seed=5).items()}
    ratios = aspect_ratios(target["boxes"])
    soft = coder.encode(target["angles"], ratios)
    prob = outputs["pred_logits"].sigmoid()[:, target["labels"]]
    focal = (-(prob + 1e-12).log() * 0.25 * (1 - prob) ** 2) - (-(1 - prob + 1e-12).log() * 0.75 * prob ** 2)
    l1 = (outputs["pred_boxes"][:, None] - target["boxes"][None]).abs().sum(-1)
    giou = generalized_box_iou(box_cxcywh_to_xyxy(outputs["pred_boxes"]), box_cxcywh_to_xyxy(target["boxes"]))
    bce = torch.stack([torch.stack([F.binary_cross_entropy_with_logits(outputs["pred_angle_logits"][q], soft[j])
                                    for j in range(3)]) for q in range(7)])
    assert torch.allclose(bce_mean_cost(outputs["pred_angle_logits"], soft), bce, atol=1e-5)
    arw = aspect_ratio_weight(ratios)[None]
    expected = 2 * focal + 2 * l1 - 5 * giou + 2 * bce * arw
    got = build_matcher(coder, aspect_ratio_weighting=True).cost_matrix(outputs, target)
    assert torch.allclose(got, expected, atol=1e-4)
    no_arm = build_matcher(coder, aspect_ratio_weighting=False).cost_matrix(outputs, target)
    assert torch.allclose(no_arm, 2 * focal + 2 * l1 - 5 * giou + 2 * bce, atol=1e-4)
    # Released quirk: L1 between the prediction in xyxy and the gt in cxcywh.
    quirk = build_matcher(coder, released_l1_cost_quirk=True).cost_matrix(outputs, target)
    quirk_l1 = (box_cxcywh_to_xyxy(outputs["pred_boxes"])[:, None] - target["boxes"][None]).abs().sum(-1)
    assert torch.allclose(quirk - got, 2 * (quirk_l1 - l1), atol=1e-4)


def test_rotated_cost_uses_five_dim_l1_and_rotated_iou():
    matcher = make_matcher("rotated_ddetr")
    target = random_targets([3], seed=6)[0]
    outputs = {k: v[0] for k, v in random_outputs(1, 5, 1, seed=7).items()}
    pred = torch.cat([outputs["pred_boxes"], outputs["pred_angles"][:, None]], 1)
    gt = torch.cat([target["boxes"], target["angles"][:, None]], 1)
    prob = outputs["pred_logits"].sigmoid()[:, target["labels"]]
    focal = (-(prob + 1e-12).log() * 0.25 * (1 - prob) ** 2) - (-(1 - prob + 1e-12).log() * 0.75 * prob ** 2)
    expected = 2 * focal + 2 * torch.cdist(pred, gt, p=1) - 5 * pairwise_rotated_box_iou(pred, gt)
    assert torch.allclose(matcher.cost_matrix(outputs, target), expected, atol=1e-5)


@pytest.mark.parametrize("variant", ["ars_detr", "rotated_ddetr"])
def test_matcher_recovers_hidden_permutation_on_real_dota_targets(shared_data, variant):
    matcher = make_matcher(variant)
    target = real_targets(shared_data / "dota_dense" / "labelTxt" / "P0005.txt")
    n, queries, num_classes = len(target["labels"]), len(target["labels"]) + 60, len(target["class_names"])
    assert n > 100
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(queries, generator=g)[:n]  # query perm[j] is the exact copy of object j
    logits = torch.full((1, queries, num_classes), -4.0)
    boxes = torch.rand(1, queries, 4, generator=g) * 0.5 + 0.2
    logits[0, perm, target["labels"]] = 4.0
    boxes[0, perm] = target["boxes"]
    coder = matcher.angle_coder
    if coder.num_bins == 1:
        angle_logits = torch.zeros(1, queries, 1)
        angle_logits[0, perm] = coder.encode(target["angles"]).float()
    else:
        angle_logits = torch.full((1, queries, 180), -3.0)
        soft = coder.encode(target["angles"], aspect_ratios(target["boxes"]))
        angle_logits[0, perm] = torch.logit(soft.clamp(1e-4, 1 - 1e-4))
    outputs = {"pred_logits": logits, "pred_boxes": boxes, "pred_angle_logits": angle_logits,
               "pred_angles": coder.decode(angle_logits)}
    pred_idx, gt_idx = matcher(outputs, [target])[0]
    assert torch.equal(pred_idx[gt_idx.argsort()], perm)


def test_matcher_rejects_diverged_predictions():
    matcher = make_matcher("ars_detr")
    outputs = random_outputs(1, 5, 180)
    outputs["pred_boxes"][0, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        matcher(outputs, random_targets([2]))


# ---------------------------------------------------------------- denoising
@pytest.mark.parametrize("max_gts,groups", [(1, 100), (7, 14), (33, 3), (100, 1), (150, 1)])
def test_dn_group_count_follows_spec(max_gts, groups):
    gen = DenoisingGenerator(NUM_CLASSES, hidden_dim=16).train()
    dn = gen(random_targets([max_gts, max(max_gts // 2, 0)], seed=max_gts), num_matching_queries=9)
    assert dn["dn_meta"] == {"pad_size": 2 * max_gts * groups, "num_groups": groups, "max_gts": max_gts}
    pad = dn["dn_meta"]["pad_size"]
    assert dn["query_content"].shape == (2, pad, 16)
    assert dn["reference_boxes_unact"].shape == (2, pad, 4) and dn["reference_angles"].shape == (2, pad)
    assert dn["attn_mask"].shape == (pad + 9, pad + 9) and dn["attn_mask"].dtype == torch.bool


def test_dn_group_count_on_real_dota_images(shared_data):
    gen = DenoisingGenerator(15).train()
    sparse = real_targets(shared_data / "dota_sample" / "labelTxt" / "P0075.txt")  # a handful of objects
    dense = real_targets(shared_data / "dota_dense" / "labelTxt" / "P0005.txt")  # > 100 vehicles
    for t in (sparse, dense):
        t["labels"] = t["labels"] % 15
    n_sparse, n_dense = len(sparse["labels"]), len(dense["labels"])
    assert gen([sparse], 300)["dn_meta"]["num_groups"] == 100 // n_sparse
    meta = gen([sparse, dense], 300)["dn_meta"]
    assert meta == {"pad_size": 2 * n_dense, "num_groups": 1, "max_gts": n_dense}


def test_dn_attention_mask_structure():
    pad, groups, queries = 12, 3, 5  # M = 2: groups [0, 4), [4, 8), [8, 12)
    mask = build_dn_attn_mask(pad, groups, queries)
    expected = torch.zeros(pad + queries, pad + queries, dtype=torch.bool)
    for row in range(pad + queries):
        for col in range(pad + queries):
            if row >= pad:
                expected[row, col] = col < pad  # matching queries never see DN slots
            elif col < pad:
                expected[row, col] = row // 4 != col // 4  # DN groups are isolated
    assert torch.equal(mask, expected)


def test_dn_attention_mask_isolates_matching_queries_in_real_attention():
    torch.manual_seed(0)
    gen = DenoisingGenerator(NUM_CLASSES, hidden_dim=16).train()
    dn = gen(random_targets([3, 2], seed=3), num_matching_queries=6)
    attn = torch.nn.MultiheadAttention(16, 2, batch_first=True).eval()
    matching = torch.randn(2, 6, 16)
    out1 = attn(*(torch.cat([dn["query_content"], matching], 1),) * 3, attn_mask=dn["attn_mask"])[0]
    out2 = attn(*(torch.cat([torch.randn_like(dn["query_content"]), matching], 1),) * 3, attn_mask=dn["attn_mask"])[0]
    pad = dn["dn_meta"]["pad_size"]
    assert torch.allclose(out1[:, pad:], out2[:, pad:], atol=1e-6)  # DN content invisible to matching queries
    assert not torch.allclose(out1[:, :pad], out2[:, :pad])


def test_dn_noise_positives_closer_than_negatives():
    gen = DenoisingGenerator(NUM_CLASSES, hidden_dim=8, label_noise=0.0).train()
    g = torch.Generator().manual_seed(5)
    n = 20
    # boxes well inside the image (no clamping), angles away from 0 (relative noise) and from +-pi/2 (no wrap)
    angles = (torch.rand(n, generator=g) - 0.5) * 2.8
    target = {"labels": torch.randint(0, NUM_CLASSES, (n,), generator=g),
              "boxes": torch.cat([torch.rand(n, 2, generator=g) * 0.4 + 0.3,
                                  torch.rand(n, 2, generator=g) * 0.1 + 0.05], 1),
              "angles": torch.where(angles.abs() < 0.05, torch.full_like(angles, 0.3), angles)}
    dn = gen([target], num_matching_queries=10, generator=g)
    groups, m = dn["dn_meta"]["num_groups"], dn["dn_meta"]["max_gts"]
    assert groups == 5 and m == n
    boxes = dn["noised_boxes"][0].reshape(groups, 2, m, 4)
    angles = dn["reference_angles"][0].reshape(groups, 2, m)
    gt_xyxy = box_cxcywh_to_xyxy(target["boxes"])
    half = target["boxes"][:, 2:].repeat(1, 2) / 2
    shift = ((box_cxcywh_to_xyxy(boxes) - gt_xyxy) / half).abs()  # in units of half w / half h
    assert shift[:, 0].max() < 0.4 + 1e-5 and shift[:, 1].min() >= 0.4 - 1e-5 and shift[:, 1].max() < 0.8 + 1e-5
    rel = ((angles - target["angles"]) / target["angles"]).abs()  # multiplicative angle noise
    assert rel[:, 0].max() < 0.02 + 1e-6 and rel[:, 1].min() >= 0.02 - 1e-6 and rel[:, 1].max() < 0.04 + 1e-6
    # positives are on average much closer to their GT than negatives
    assert shift[:, 0].mean() < 0.5 * shift[:, 1].mean()
    assert torch.allclose(dn["reference_boxes_unact"][0],
                          torch.logit(dn["noised_boxes"][0].clamp(1e-3, 1 - 1e-3)), atol=1e-4)
    # label noise off: positive and negative slots carry the GT label embedding
    assert torch.equal(dn["noised_labels"][0].reshape(groups, 2, m), target["labels"].expand(groups, 2, m))


def test_dn_label_noise_rate_and_padding_slots():
    gen = DenoisingGenerator(15, hidden_dim=8).train()
    targets = random_targets([100, 37], seed=8, num_classes=15)
    dn = gen(targets, num_matching_queries=300, generator=torch.Generator().manual_seed(1))
    m = 100
    changed = (dn["noised_labels"][0].reshape(2, m) != targets[0]["labels"]).float().mean().item()
    # replaced with p = 0.5 * 0.5 by a uniform class that differs from the GT with p = 14/15
    assert 0.12 < changed < 0.35
    # image 1 has 37 targets: slots 37..99 and 137..199 are padding (zero content, zero reference)
    pad_slots = torch.cat([torch.arange(37, 100), torch.arange(137, 200)])
    assert dn["query_content"][1, pad_slots].abs().max() == 0
    assert dn["reference_boxes_unact"][1, pad_slots].abs().max() == 0
    assert dn["query_content"][1, :37].abs().sum(-1).min() > 0
    assert (dn["reference_angles"] >= -math.pi / 2).all() and (dn["reference_angles"] < math.pi / 2).all()


def test_dn_returns_none_in_eval_or_without_targets():
    gen = DenoisingGenerator(NUM_CLASSES)
    assert gen.train()(random_targets([0, 0]), 10) is None
    assert gen.eval()(random_targets([3]), 10) is None


def test_split_dn_outputs():
    per_layer = {"pred_logits": torch.randn(2, 7, 3), "pred_angles": torch.randn(2, 7), "dn_meta": {"pad_size": 4}}
    matching, dn = split_dn_outputs(per_layer, pad_size=4)
    assert torch.equal(dn["pred_logits"], per_layer["pred_logits"][:, :4])
    assert torch.equal(matching["pred_angles"], per_layer["pred_angles"][:, 4:])
    stacked = {"pred_boxes": torch.randn(6, 2, 7, 4)}
    matching, dn = split_dn_outputs(stacked, pad_size=4, dim=2)
    assert matching["pred_boxes"].shape == (6, 2, 3, 4) and dn["pred_boxes"].shape == (6, 2, 4, 4)
