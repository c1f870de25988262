"""Release-fidelity behaviour (docs/fidelity.md, issue 17): the released loss normaliser, and each switch
that selects the released behaviour in configs/paper.yaml, pinned on a small fixed case."""
from __future__ import annotations

import math

import pytest
import torch

from mutdet_core.config import load_config, read_overlays
from mutdet_core.models.angle_coder import build_angle_coder
from mutdet_core.models.box_ops import box_cxcywh_to_xyxy
from mutdet_core.models.criterion import build_criterion, sigmoid_focal_loss
from mutdet_core.models.deformable_attention import MultiScaleDeformableAttention
from mutdet_core.models.detector import build_detector
from mutdet_core.models.rotated_deformable_attention import RotatedMultiScaleDeformableAttention
from mutdet_core.models.two_stage import gen_encoder_output_proposals
from mutdet_core.pretraining import build_pretrainer
from mutdet_core.runs import plan
from pretraining_fixtures import TINY_DETECTOR
from test_models_training_side_helpers import make_targets, stage

C = 4
TINY = dict(variant="ars_detr", num_classes=3, backbone={"name": "tiny", "width": 8}, d_model=32, n_heads=4,
            ffn_dim=64, num_encoder_layers=1, num_decoder_layers=2, num_queries=12, num_dn_queries=6)


def fixed_targets(counts, seed=0):
    return make_targets(counts, seed, num_classes=C)


def fixed_stage(batch, queries, coder, seed=1):
    return stage(batch, queries, coder.num_bins, coder, torch.Generator().manual_seed(seed), num_classes=C)


def focal_sum(stage, targets, indices, labels_zero=False):
    """Sum of the focal loss over every query and class, the matched pairs one-hot (the loss before its
    normaliser), computed here independently of the criterion."""
    onehot = torch.zeros_like(stage["pred_logits"])
    for b, (src, tgt) in enumerate(indices):
        labels = torch.zeros_like(tgt) if labels_zero else targets[b]["labels"][tgt]
        onehot[b, src, labels] = 1.0
    return sigmoid_focal_loss(stage["pred_logits"], onehot).sum()


# ------------------------------------------------------------------ 1. loss normalisation (always released)

def test_decoder_losses_divide_by_the_matched_positives_when_boxes_outnumber_queries():
    """5 queries, 8 boxes: the released heads divide by min(Q, n) = 5 positives, DETR by the 8 boxes."""
    criterion = build_criterion(C, build_angle_coder("arcsl"))
    out = fixed_stage(1, 5, criterion.angle_coder)
    targets = fixed_targets([8])
    losses, indices = criterion(out, targets, return_indices=True)
    src, tgt = indices["last"][0]
    assert len(src) == 5
    total = focal_sum(out, targets, indices["last"])
    assert losses["loss_cls"].item() == pytest.approx(total.item() / 5, rel=1e-6)
    assert losses["loss_cls"].item() == pytest.approx(total.item() / 8 * 8 / 5, rel=1e-6)  # DETR's value x n/Q
    assert losses["loss_cls"].item() == pytest.approx(0.6910679, abs=1e-6)  # released; DETR's rule: 0.4319174
    l1 = (out["pred_boxes"][0, src] - targets[0]["boxes"][tgt]).abs().sum()
    assert losses["loss_bbox"].item() == pytest.approx(l1.item() / 5, rel=1e-6)


def test_normaliser_sums_the_positives_of_the_batch_per_stage():
    """Batch of n = (8, 2) with Q = 5: 5 + 2 = 7 positives for the decoder stage; the encoder stage of 3
    tokens has 3 + 2 = 5; DN keeps G * n (every DN positive is matched by construction)."""
    criterion = build_criterion(C, build_angle_coder("arcsl"))
    coder = criterion.angle_coder
    out = fixed_stage(2, 5, coder)
    out["enc_outputs"] = fixed_stage(2, 3, coder, seed=2)
    groups, max_gts = 2, 8
    dn = fixed_stage(2, 2 * groups * max_gts, coder, seed=3)
    out["dn_outputs"] = {k: v[None] for k, v in dn.items()}
    out["dn_outputs"]["dn_meta"] = {"pad_size": 2 * groups * max_gts, "num_groups": groups, "max_gts": max_gts}
    targets = fixed_targets([8, 2])
    losses, indices = criterion(out, targets, return_indices=True)
    assert losses["loss_cls"].item() == pytest.approx(focal_sum(out, targets, indices["last"]).item() / 7, rel=1e-6)
    enc_sum = focal_sum(out["enc_outputs"], targets, indices["enc"], labels_zero=True)
    assert losses["enc_loss_cls"].item() == pytest.approx(enc_sum.item() / 5, rel=1e-6)
    dn_sum = focal_sum(dn, targets, indices["dn"])
    assert losses["dn_loss_cls"].item() == pytest.approx(dn_sum.item() / (groups * 10), rel=1e-6)


def test_normaliser_equals_the_box_count_when_queries_suffice():
    criterion = build_criterion(C, build_angle_coder("arcsl"))
    out = fixed_stage(1, 12, criterion.angle_coder)
    targets = fixed_targets([8])
    losses, indices = criterion(out, targets, return_indices=True)
    assert losses["loss_cls"].item() == pytest.approx(focal_sum(out, targets, indices["last"]).item() / 8, rel=1e-6)


# ------------------------------------------------------------------ 2. L1 matching cost

def test_released_l1_cost_quirk_compares_predicted_xyxy_with_target_cxcywh():
    coder = build_angle_coder("arcsl")
    out = fixed_stage(1, 5, coder)
    target = build_criterion(C, coder).prepare_targets(fixed_targets([3]))[0]
    pred = {k: v[0] for k, v in out.items()}
    plain = build_criterion(C, coder).matcher.cost_matrix(pred, target)
    quirk = build_criterion(C, coder, released_l1_cost_quirk=True).matcher.cost_matrix(pred, target)
    boxes, gt = out["pred_boxes"][0], target["boxes"]
    expected = 2.0 * (torch.cdist(box_cxcywh_to_xyxy(boxes), gt, p=1) - torch.cdist(boxes, gt, p=1))
    assert torch.allclose(quirk - plain, expected, atol=1e-5)
    assert (quirk - plain).abs().max() > 0.1


# ------------------------------------------------------------------ 3. initialisation

def test_released_attention_init_leaves_the_rotated_attention_xavier():
    torch.manual_seed(0)
    fixed, _, _ = build_detector(TINY)
    torch.manual_seed(0)
    released, _, _ = build_detector(dict(TINY, released_attention_init=True))
    for model, xavier in ((fixed, False), (released, True)):
        rotated = [m for m in model.decoder.modules() if isinstance(m, RotatedMultiScaleDeformableAttention)]
        assert len(rotated) == TINY["num_decoder_layers"]
        for m in rotated:
            for linear in (m.sampling_offsets, m.attention_weights):
                fan_out, fan_in = linear.weight.shape
                bound = math.sqrt(6.0 / (fan_in + fan_out))
                if xavier:
                    assert linear.weight.abs().max() > 0.5 * bound and linear.weight.abs().max() <= bound
                else:
                    assert torch.count_nonzero(linear.weight) == 0
        # the biases keep mmcv's init either way: a ring of head directions, uniform attention
        ring = MultiScaleDeformableAttention(TINY["d_model"], TINY["n_heads"]).sampling_offsets.bias
        assert all(torch.equal(m.sampling_offsets.bias, ring) for m in rotated)
        assert all(torch.count_nonzero(m.attention_weights.bias) == 0 for m in rotated)
        # the encoder's plain MSDA gets the zero init in both (the release re-initialises mmcv's MSDA)
        plain = model.encoder.layers[0]
        offsets = [m for m in plain.modules() if hasattr(m, "sampling_offsets")]
        assert offsets and all(torch.count_nonzero(m.sampling_offsets.weight) == 0 for m in offsets)


def test_released_encoder_embedding_init_is_xavier():
    """MutDet's encoder embedding MLP (released patch_enc_decode, inside the transformer): Xavier-uniform
    weights. Its second layer Linear(4D, D) tells the two apart: PyTorch's bound is 1/sqrt(4D) = 0.088 at
    D = 32, Xavier's sqrt(6 / 5D) = 0.194."""
    torch.manual_seed(0)
    default, _ = build_pretrainer(dict(method="mutdet", embedding_dim=32), TINY_DETECTOR)
    torch.manual_seed(0)
    released, _ = build_pretrainer(dict(method="mutdet", embedding_dim=32, released_encoder_embedding_init=True),
                                   TINY_DETECTOR)
    second = lambda model: model.encoder_embedding_head.layers[1].weight  # noqa: E731
    assert second(default).abs().max() <= 1 / math.sqrt(128) + 1e-6
    assert second(released).abs().max() > 0.15 and second(released).abs().max() <= math.sqrt(6 / 160)
    with pytest.raises(ValueError, match="released_encoder_embedding_init"):
        build_pretrainer(dict(method="mutdet", released_encoder_embedding_init="yes"), TINY_DETECTOR)


# ------------------------------------------------------------------ 4. invalid proposal tokens

@pytest.mark.parametrize("size, invalid, total", [(416, 204, 3598), (800, 592, 13294), (1024, 760, 21760)])
def test_unpadded_tiles_have_invalid_proposal_tokens(size, invalid, total):
    """Strides 8-64: the outer ring of pixel centres of every level with >= 50 cells lies outside
    (0.01, 0.99); decision 7's premise ("no token is invalid at real sizes") does not hold."""
    shapes = torch.tensor([[math.ceil(size / s)] * 2 for s in (8, 16, 32, 64)])
    _, valid = gen_encoder_output_proposals(torch.zeros(1, total, dtype=torch.bool), shapes)
    assert int((~valid).sum()) == invalid
    rings = sum(w * w - (w - 2) ** 2 for w in shapes[:, 0].tolist() if 0.5 / w <= 0.01)
    assert rings == invalid


def test_mask_invalid_proposals_switch_on_a_real_forward():
    """A 416 x 416 image through the tiny detector (strides 8-64: 204 invalid tokens of 3,598). With scores
    that favour the invalid tokens, the released ranking (mask_invalid_proposals: false) selects them; the
    masked one never does."""
    images = torch.randn(1, 3, 416, 416, generator=torch.Generator().manual_seed(0))
    picked = {}
    for mask in (True, False):
        torch.manual_seed(0)
        model, _, _ = build_detector(dict(TINY, mask_invalid_proposals=mask))
        model.eval()
        with torch.no_grad():
            enc = model.encode(images)
            _, valid = gen_encoder_output_proposals(enc["memory_padding_mask"], enc["spatial_shapes"])
            assert int((~valid).sum()) == 204
            scores = (~valid).float() * 10 + torch.linspace(0, 1, valid.shape[1])
            out = model.detect_from_memory(enc, selection_scores=scores)
        picked[mask] = int((~valid[0, out["enc_outputs"]["topk_indices"][0]]).sum())
    assert picked[True] == 0 and picked[False] == TINY["num_queries"]


# ------------------------------------------------------------------ 5, 7. the paper profile

@pytest.fixture(scope="module")
def paper(repo_root):
    return load_config(repo_root / "configs/paper.yaml")


def test_paper_profile_selects_the_released_behaviour(paper):
    for name in paper["models"]:
        cfg = plan.detector_config(paper, name)
        assert cfg["released_l1_cost_quirk"] is True and cfg["released_attention_init"] is True
        assert cfg["mask_invalid_proposals"] is False
    for method in ("mutdet", "mutdet_cl_ee_ef_el", "detreg"):
        assert plan.method_config(paper, method)["dn_alignment"] == "released"
    assert plan.method_config(paper, "mutdet")["released_encoder_embedding_init"] is True
    assert "dn_alignment" not in plan.method_config(paper, "updetr")


def test_paper_profile_depth_and_queries_follow_the_release(paper, repo_root):
    r50_pre = plan.pretrain_detector_config(paper, "resnet50_ars_detr")
    r50_ft = plan.detector_config(paper, "resnet50_ars_detr")
    assert (r50_pre["num_encoder_layers"], r50_pre["num_decoder_layers"]) == (2, 2)  # E2D2
    assert r50_ft.get("num_encoder_layers", 6) == r50_ft.get("num_decoder_layers", 6) == 6
    swin_pre, swin_ft = (plan.pretrain_detector_config(paper, "swin_t_ars_detr"),
                         plan.detector_config(paper, "swin_t_ars_detr"))
    assert swin_pre["num_queries"] == 400 and (swin_ft["num_queries"], swin_ft["num_select"]) == (900, 500)
    # the paper's text as the named overlay: 6/6 and 300 queries everywhere
    text = load_config(repo_root / "configs/paper.yaml",
                       overrides=read_overlays([repo_root / "configs/paper_text.yaml"]))
    for name in text["models"]:
        for cfg in (plan.pretrain_detector_config(text, name), plan.detector_config(text, name)):
            assert cfg.get("num_encoder_layers", 6) == cfg.get("num_decoder_layers", 6) == 6
            assert cfg.get("num_queries", 300) == 300 and cfg.get("num_select", 300) == 300
    assert text["results_dir"] != paper["results_dir"]
    assert plan.check_run_configs(paper) == [] and plan.check_run_configs(text) == []


def test_unknown_pretrain_model_and_bad_method_defaults_are_reported(paper):
    import copy
    bad = copy.deepcopy(paper)
    bad["pretrain"]["models"]["resnet51"] = {"num_queries": 10}
    bad["pretrain"]["method_defaults"]["updetr"] = {"dn_alignment": "released"}
    problems = "\n".join(plan.check_run_configs(bad))
    assert "pretrain.models: 'resnet51'" in problems
    assert "pretrain.method_defaults.updetr" in problems and "dn_alignment" in problems
