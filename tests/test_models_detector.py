"""The assembled ARS-DETR family: output contract, training step, batching, DN masking, postprocess, checkpoints."""
from __future__ import annotations

import math

import pytest
import torch

from mutdet_core.geometry import obb2poly
from mutdet_core.models.checkpoint import FRESH_PREFIXES, load_pretrained
from mutdet_core.models.detector import VARIANTS, build_detector
from mutdet_core.models.postprocess import PostProcess

torch.set_num_threads(1)
VARIANT_NAMES = sorted(VARIANTS)
CHECKPOINT_PREFIXES = ("backbone.", "neck.", "encoder.", "two_stage.", "decoder.", "heads.class_branches.",
                       "heads.box_branches.", "heads.angle_branches.", "query_embedding.", "denoising.label_embedding.")


def tiny_cfg(variant: str, **overrides) -> dict:
    cfg = dict(variant=variant, num_classes=3, backbone={"name": "tiny", "width": 8}, d_model=32, n_heads=4,
               ffn_dim=64, num_encoder_layers=1, num_decoder_layers=3, num_queries=12, num_dn_queries=6,
               num_select=20)
    cfg.update(overrides)
    return cfg


def some_targets():
    return [dict(labels=torch.tensor([0, 2]), boxes=torch.tensor([[0.3, 0.3, 0.2, 0.1], [0.6, 0.7, 0.3, 0.1]]),
                 angles=torch.tensor([0.3, -1.2])),
            dict(labels=torch.zeros(0, dtype=torch.long), boxes=torch.zeros(0, 4), angles=torch.zeros(0))]


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_forward_backward_every_variant(variant):
    torch.manual_seed(0)
    model, criterion, _ = build_detector(tiny_cfg(variant))
    model.train()
    images = torch.randn(2, 3, 64, 96)
    out = model(images, targets=some_targets())
    n_angle = 1 if variant == "rotated_ddetr" else 180
    tokens = 8 * 12 + 4 * 6 + 2 * 3 + 1 * 2  # strides 8, 16, 32, 64
    assert out["pred_logits"].shape == (2, 12, 3) and out["pred_boxes"].shape == (2, 12, 4)
    assert out["pred_angle_logits"].shape == (2, 12, n_angle) and out["pred_angles"].shape == (2, 12)
    assert len(out["aux_outputs"]) == 2 and out["aux_outputs"][0]["pred_boxes"].shape == (2, 12, 4)
    enc = out["enc_outputs"]
    assert enc["pred_logits"].shape == (2, tokens, 3) and enc["pred_angle_logits"].shape == (2, tokens, n_angle)
    assert enc["topk_indices"].shape == (2, 12)
    assert out["hs"].shape == (3, 2, 12, 32) and out["memory"].shape == (2, tokens, 32)
    assert out["valid_ratios"].shape == (2, 4, 2)
    assert out["spatial_shapes"].tolist() == [[8, 12], [4, 6], [2, 3], [1, 2]]
    assert ((out["pred_boxes"] >= 0) & (out["pred_boxes"] <= 1)).all()
    assert ((out["pred_angles"] >= -math.pi / 2) & (out["pred_angles"] < math.pi / 2)).all()
    if variant == "ars_detr":
        dn = out["dn_outputs"]
        pad = dn["dn_meta"]["pad_size"]  # 2 * max_gts * groups = 2 * 2 * 3
        assert pad == 12 and dn["pred_logits"].shape == (3, 2, pad, 3) and dn["pred_angles"].shape == (3, 2, pad)
        assert dn["hs"].shape == (3, 2, pad, 32)
    else:
        assert out["dn_outputs"] is None

    losses = criterion(out, some_targets())
    assert all(torch.isfinite(v) for v in losses.values())
    total = criterion.total_loss(losses)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.heads.class_branches[2].weight.grad.abs().sum() > 0  # last decoder layer learns


def test_dn_variant_with_no_targets_in_the_batch():
    model, criterion, _ = build_detector(tiny_cfg("ars_detr"))
    model.train()
    empty = [some_targets()[1], some_targets()[1]]
    out = model(torch.randn(2, 3, 64, 64), targets=empty)
    assert out["dn_outputs"] is None
    criterion.total_loss(criterion(out, empty)).backward()
    # The DN label embedding still gets a (zero) gradient, so DDP sees every parameter used.
    assert model.denoising.label_embedding.weight.grad is not None


@pytest.mark.parametrize("variant", ["ars_detr", "rotated_ddetr"])
def test_batched_equals_single_images_in_eval(variant):
    torch.manual_seed(1)
    model, _, _ = build_detector(tiny_cfg(variant))
    model.eval()
    images = torch.randn(2, 3, 64, 64)
    mask = torch.zeros(2, 64, 64, dtype=torch.bool)
    mask[1, 40:, :] = True  # image 1 is 40 x 48 padded to 64 x 64
    mask[1, :, 48:] = True
    images[1][:, mask[1]] = 0.0
    with torch.no_grad():
        batched = model(images, mask)
        singles = [model(images[i:i + 1], mask[i:i + 1]) for i in range(2)]
    for i, single in enumerate(singles):
        for key in ("pred_logits", "pred_boxes", "pred_angle_logits", "pred_angles"):
            torch.testing.assert_close(batched[key][i:i + 1], single[key], rtol=1e-4, atol=1e-4)
    # Padded tokens are never selected as queries.
    padded = batched["memory_padding_mask"][1]
    assert not padded[batched["enc_outputs"]["topk_indices"][1]].any()
    assert batched["valid_ratios"][1, 0].tolist() == [0.75, 0.625]


def test_matching_queries_do_not_see_dn_queries():
    """The DN attention mask hides DN slots from the matching queries: their outputs equal a run without DN."""
    torch.manual_seed(2)
    model, _, _ = build_detector(tiny_cfg("ars_detr", dropout=0.0))
    model.train()
    images = torch.randn(2, 3, 64, 64)
    with_dn = model(images, targets=some_targets())
    without = model(images)
    assert with_dn["dn_outputs"] is not None and without["dn_outputs"] is None
    for key in ("pred_logits", "pred_boxes", "pred_angles"):
        torch.testing.assert_close(with_dn[key], without[key], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant,looks_forward_twice", [("ars_detr", True), ("arcsl_ddetr", False)])
def test_look_forward_twice(variant, looks_forward_twice):
    """DINO style: layer l's box gets gradient through layer l-1's (undetached) refined reference."""
    model, _, _ = build_detector(tiny_cfg(variant))
    model.eval()
    out = model(torch.randn(1, 3, 64, 64))
    out["pred_boxes"].sum().backward()
    grad = model.heads.box_branches[1].layers[-1].weight.grad  # layer L-2 = 1 of 3
    assert (grad is not None and grad.abs().sum() > 0) == looks_forward_twice


def test_postprocess_scales_width_and_height_separately():
    logits = torch.full((1, 3, 2), -10.0)
    logits[0, 1, 1] = 5.0  # query 1, class 1 is the best pair
    logits[0, 2, 0] = 2.0
    boxes = torch.tensor([[[0.1, 0.1, 0.1, 0.1], [0.5, 0.25, 0.2, 0.1], [0.5, 0.5, 0.05, 0.3]]])
    angles = torch.tensor([[0.0, 0.3, 0.2]])
    outputs = {"pred_logits": logits, "pred_boxes": boxes, "pred_angles": angles}
    result = PostProcess(num_select=4)(outputs, (200, 400))[0]  # H = 200, W = 400
    assert result["scores"].shape == (4,) and result["boxes"].shape == (4, 5) and result["polygons"].shape == (4, 8)
    assert result["labels"][:2].tolist() == [1, 0]
    torch.testing.assert_close(result["scores"][0], torch.sigmoid(torch.tensor(5.0)))
    torch.testing.assert_close(result["boxes"][0], torch.tensor([200.0, 50.0, 80.0, 20.0, 0.3]))
    # w = 0.05 * 400 = 20 < h = 0.3 * 200 = 60: rewritten in le90 as (60, 20, 0.2 + pi/2 - pi).
    torch.testing.assert_close(result["boxes"][1], torch.tensor([200.0, 100.0, 60.0, 20.0, 0.2 - math.pi / 2]))
    torch.testing.assert_close(result["polygons"], obb2poly(result["boxes"]))
    # Back to the original image: a keep-ratio resize by 2 halves every length.
    halved = PostProcess(num_select=1)(outputs, (200, 400), scale_factors=torch.tensor([2.0]))[0]
    torch.testing.assert_close(halved["boxes"][0], torch.tensor([100.0, 25.0, 40.0, 10.0, 0.3]))


def test_parameter_names_follow_the_checkpoint_contract(tmp_path):
    model, _, _ = build_detector(tiny_cfg("ars_detr"))
    names = list(model.state_dict())
    assert [n for n in names if not n.startswith(CHECKPOINT_PREFIXES)] == []
    assert "encoder.level_embed" in names and "query_embedding.weight" in names
    assert "heads.class_branches.3.weight" in names  # L decoder stages + the encoder stage at index L = 3

    # Pre-training with 7 pseudo-classes and an extra module -> fine-tuning with 3 classes.
    pretrained, _, _ = build_detector(tiny_cfg("ars_detr", num_classes=7))
    state = dict(pretrained.state_dict())
    state["enhancement.layers.0.weight"] = torch.zeros(2, 2)
    path = tmp_path / "pretrain.pth"
    torch.save({"model": state}, path)
    model, _, _ = build_detector(tiny_cfg("ars_detr"))
    fresh_cls = model.heads.class_branches[0].weight.clone()
    report = load_pretrained(model, path)
    assert report["unexpected"] == ["enhancement.layers.0.weight"] and not report["shape_mismatch"]
    assert all(k.startswith(FRESH_PREFIXES) for k in report["fresh"]) and report["missing"] == []
    torch.testing.assert_close(model.decoder.layers[0].cross_attn.sampling_offsets.weight,
                               pretrained.decoder.layers[0].cross_attn.sampling_offsets.weight)
    torch.testing.assert_close(model.heads.angle_branches[1].weight, pretrained.heads.angle_branches[1].weight)
    assert torch.equal(model.heads.class_branches[0].weight, fresh_cls)
    with pytest.raises(ValueError, match="no parameter matches"):
        load_pretrained(model, {"something.else": torch.zeros(1)})


def test_bad_inputs_are_rejected_early():
    model, _, _ = build_detector(tiny_cfg("csl_ddetr"))
    with pytest.raises(ValueError, match="images must be"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="padding_mask must be"):
        model(torch.randn(1, 3, 64, 64), torch.zeros(1, 32, 32, dtype=torch.bool))
    with pytest.raises(ValueError, match="unknown detector variant"):
        build_detector({"variant": "yolo"})
    with pytest.raises(ValueError, match=r"unknown detector config keys \['num_querys'\]"):
        build_detector({"num_querys": 10})
