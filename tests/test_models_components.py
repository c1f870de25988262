"""Backbones, neck, position encodings, two-stage proposals and heads of the ARS-DETR family."""
from __future__ import annotations

import math

import pytest
import torch
from torchvision.models import resnet18, resnet50

from mutdet_core.models.backbone import ResNetBackbone, SwinBackbone, TinyBackbone, build_backbone
from mutdet_core.models.heads import PredictionHeads
from mutdet_core.models.neck import build_neck
from mutdet_core.models.position_encoding import (PositionEmbeddingSine, gen_sineembed_for_position,
                                                  proposal_sine_embed)
from mutdet_core.models.two_stage import INVALID_PROPOSAL, gen_encoder_output_proposals, select_topk

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------ backbones
def test_resnet50_levels_and_freezing():
    backbone = ResNetBackbone(frozen_stages=1)
    feats = backbone(torch.randn(1, 3, 96, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(512, 12, 8), (1024, 6, 4), (2048, 3, 2)]
    trainable = {n.split(".")[1] for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable == {"layer2", "layer3", "layer4"}  # stem and layer1 frozen
    bn = backbone.body.layer3[0].bn1
    assert type(bn).__name__ == "FrozenBatchNorm2d"
    frozen_all = ResNetBackbone(freeze_all=True)
    assert not any(p.requires_grad for p in frozen_all.parameters())
    assert not any(f.requires_grad for f in frozen_all(torch.randn(1, 3, 64, 64)))  # run without autograd
    assert all(p.requires_grad for n, p in ResNetBackbone(frozen_stages=-1).named_parameters())


def test_resnet50_loads_a_torchvision_checkpoint(tmp_path):
    reference = resnet50()  # torchvision keys incl. fc.* and bn *.num_batches_tracked
    with torch.no_grad():
        reference.layer4[2].conv3.weight.normal_()
        reference.bn1.running_mean.uniform_()
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    backbone = ResNetBackbone(weights=path)
    assert torch.equal(backbone.body.layer4[2].conv3.weight, reference.layer4[2].conv3.weight)
    assert torch.equal(backbone.body.bn1.running_mean, reference.bn1.running_mean)


def test_weight_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_backbone({"name": "tiny", "weights": missing})
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="corrupt.pth.*cannot read"):
        build_backbone({"name": "tiny", "weights": corrupt})
    other = tmp_path / "resnet18.pth"
    torch.save(resnet18().state_dict(), other)
    with pytest.raises(ValueError, match="resnet18.pth.*does not match ResNet.*shape mismatches"):
        ResNetBackbone(weights=other)
    narrow = tmp_path / "tiny8.pth"
    torch.save(TinyBackbone(width=8).state_dict(), narrow)
    with pytest.raises(ValueError, match="tiny8.pth.*shape"):
        build_backbone({"name": "tiny", "width": 16, "weights": narrow})


def test_tiny_backbone_roundtrip_and_freezing(tmp_path):
    source = TinyBackbone(width=8)
    path = tmp_path / "tiny.pth"
    torch.save({"state_dict": source.state_dict()}, path)  # mmcv-style wrapper is accepted
    loaded = build_backbone({"name": "tiny", "width": 8, "weights": path, "frozen_stages": 1})
    x = torch.randn(2, 3, 64, 96)
    for a, b in zip(source(x), loaded(x)):
        torch.testing.assert_close(a, b)
    assert [tuple(f.shape[1:]) for f in loaded(x)] == [(16, 8, 12), (32, 4, 6), (64, 2, 3)]
    frozen = {n.split(".")[0] + "." + n.split(".")[1] for n, p in loaded.named_parameters() if not p.requires_grad}
    assert frozen == {"stem.0", "stem.1", "stages.0"}


def test_swin_t_returns_last_three_stages_nchw():
    backbone = SwinBackbone(frozen_stages=1)
    feats = backbone(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in feats] == [(192, 8, 12), (384, 4, 6), (768, 2, 3)]
    frozen = {n.split(".")[1] for n, p in backbone.named_parameters() if not p.requires_grad}
    assert frozen == {"0", "1"}  # patch embedding and stage 1


def test_unknown_backbone_config_is_rejected():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone({"name": "vgg"})
    with pytest.raises(ValueError, match="unknown backbone config keys"):
        build_backbone({"name": "tiny", "depth": 3})


# ------------------------------------------------------------------------------------------ neck
def test_neck_four_levels_extra_from_raw_last_map():
    neck = build_neck((16, 32, 64), d_model=32, n_levels=4)
    feats = [torch.randn(2, 16, 16, 12), torch.randn(2, 32, 8, 6), torch.randn(2, 64, 4, 3)]
    outs = neck(feats)
    assert [tuple(o.shape) for o in outs] == [(2, 32, 16, 12), (2, 32, 8, 6), (2, 32, 4, 3), (2, 32, 2, 2)]
    assert neck.extra_convs[0][0].in_channels == 64  # 3x3 stride-2 conv on the raw C5
    assert neck.extra_convs[0][0].bias is None and isinstance(neck.extra_convs[0][1], torch.nn.GroupNorm)
    assert neck.lateral_convs[0][1].num_groups == 4  # >= 8 channels per group
    assert build_neck((16, 32, 64), d_model=256).lateral_convs[0][1].num_groups == 32


# ------------------------------------------------------------------------------------------ position encodings
def test_sine_encoding_values_and_padding_invariance():
    pe = PositionEmbeddingSine(num_feats=8)
    pos = pe(torch.zeros(1, 4, 5, dtype=torch.bool))
    assert pos.shape == (1, 16, 4, 5)
    # channel 0 of the x block (channels 8..15) = sin(2 pi (x + 0.5) / W), channel 1 = cos of the same.
    x = torch.arange(5.0)
    torch.testing.assert_close(pos[0, 8, 0], torch.sin(2 * math.pi * (x + 0.5) / (5 + 1e-6)))
    torch.testing.assert_close(pos[0, 9, 2], torch.cos(2 * math.pi * (x + 0.5) / (5 + 1e-6)))
    y = torch.arange(4.0)
    torch.testing.assert_close(pos[0, 0, :, 3], torch.sin(2 * math.pi * (y + 0.5) / (4 + 1e-6)))
    # Padding: the valid region is encoded exactly as the same image without padding.
    mask = torch.zeros(1, 6, 8, dtype=torch.bool)
    mask[:, 4:, :] = True
    mask[:, :, 5:] = True
    torch.testing.assert_close(pe(mask)[..., :4, :5], pos)


def test_query_sine_embeddings_order():
    boxes = torch.rand(2, 3, 4)
    embed = gen_sineembed_for_position(boxes, num_feats=16)
    assert embed.shape == (2, 3, 64)
    changed = boxes.clone()
    changed[..., 1] += 0.1  # y only: the first (y) block changes, x / w / h blocks do not
    other = gen_sineembed_for_position(changed, num_feats=16)
    assert not torch.allclose(other[..., :16], embed[..., :16])
    torch.testing.assert_close(other[..., 16:], embed[..., 16:])
    torch.testing.assert_close(embed[..., 16], torch.sin(boxes[..., 0] * 2 * math.pi))
    # Proposal embedding: sigmoid inside, blocks ordered (x, y, w, h) instead of (y, x, w, h).
    prop = proposal_sine_embed(torch.logit(boxes), num_feats=16)
    swapped = torch.cat([embed[..., 16:32], embed[..., :16], embed[..., 32:]], -1)
    torch.testing.assert_close(prop, swapped, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------ two-stage
def test_encoder_proposals_grid_validity_and_topk():
    shapes = torch.tensor([[4, 4], [2, 2]])
    mask = torch.zeros(2, 20, dtype=torch.bool)
    mask[1, :4] = True  # first row of level 0 of image 1 is padding
    proposals, valid = gen_encoder_output_proposals(mask, shapes)
    p = proposals.sigmoid()
    torch.testing.assert_close(p[0, 5], torch.tensor([1.5 / 4, 1.5 / 4, 0.05, 0.05]))
    torch.testing.assert_close(p[0, 16], torch.tensor([0.25, 0.25, 0.1, 0.1]))
    assert valid[0].all() and not valid[1, :4].any() and valid[1, 4:].all()
    assert (proposals[1, :4] == INVALID_PROPOSAL).all()
    scores = torch.zeros(2, 20)
    scores[1, :4] = 100.0  # the padded tokens would win without the mask
    top = select_topk(scores, valid, 6)
    assert top.shape == (2, 6) and (top[1] >= 4).all()
    assert select_topk(scores, valid, 50).shape == (2, 20)  # k is clipped to the number of tokens
    five, _ = gen_encoder_output_proposals(mask, shapes, box_dim=5)
    assert five.shape == (2, 20, 5) and (five[0, :, 4] == 0).all()


def test_heads_init():
    heads = PredictionHeads(32, num_classes=5, num_stages=3, box_dim=4, num_angle_bins=180)
    assert len(heads.class_branches) == len(heads.box_branches) == len(heads.angle_branches) == 3
    assert heads.class_branches[2].bias.tolist() == pytest.approx([-math.log(99)] * 5)
    for box in heads.box_branches:
        assert box.layers[-1].weight.abs().max() == 0 and box.layers[-1].bias.abs().max() == 0
    assert heads.class_branches[0] is not heads.class_branches[1]
    no_angle = PredictionHeads(32, 5, 3, box_dim=5, num_angle_bins=0)
    assert no_angle.angle_branches is None and no_angle.box_branches[0].layers[-1].out_features == 5
