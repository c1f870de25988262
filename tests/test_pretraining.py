"""MutDet pre-training: mutual enhancement, contrastive alignment, the two decoding passes, the Table 1 /
Table 7 switches, and DETReg (MutDet with every switch off must be DETReg exactly)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from mutdet_core.models.two_stage import select_topk
from mutdet_core.pretraining import build_pretrainer
from mutdet_core.pretraining.ablations import TABLE7_ROW6_CANDIDATES, TABLE7_ROWS, ablation_config
from mutdet_core.pretraining.contrastive_alignment import (contrastive_alignment_loss, dn_alignment_indices,
                                                           embedding_regression_loss)
from mutdet_core.pretraining.mutdet import selection_scores
from mutdet_core.pretraining.mutual_enhancement import MutualEnhancement

from pretraining_fixtures import TINY_DETECTOR, make_batch, total_loss, train_steps

torch.set_num_threads(1)
E = 32  # embedding width of the synthetic pseudo-labels (= d_model of the tiny detector)


def mutdet(**switches):
    torch.manual_seed(0)
    return build_pretrainer(dict(method="mutdet", embedding_dim=E, **switches), TINY_DETECTOR)


# ------------------------------------------------------------------------------ contrastive alignment
def test_contrastive_alignment_is_the_symmetric_infonce_with_2t_per_direction():
    torch.manual_seed(1)
    pred, target = torch.randn(5, 8), torch.randn(5, 8)
    q, k = F.normalize(pred, dim=-1), F.normalize(target, dim=-1)
    logits = (q @ k.T / 0.2).double()
    by_hand = -0.4 * (torch.log_softmax(logits, 1).diagonal().mean() + torch.log_softmax(logits.T, 1).diagonal().mean())
    assert torch.allclose(contrastive_alignment_loss(pred, target).double(), by_hand, atol=1e-5)
    assert torch.allclose(contrastive_alignment_loss(pred, target, direction_weight=1.0).double(),
                          by_hand / 0.4, atol=1e-5)


def test_contrastive_alignment_rewards_matched_pairs_and_is_zero_without_pairs():
    torch.manual_seed(2)
    target = F.normalize(torch.randn(6, 16), dim=-1)
    aligned = contrastive_alignment_loss(target + 0.01 * torch.randn(6, 16), target)
    shuffled = contrastive_alignment_loss(target[torch.tensor([1, 2, 3, 4, 5, 0])], target)
    assert aligned < 0.1 and shuffled > 10 * aligned
    pred = torch.randn(0, 16, requires_grad=True)
    empty = contrastive_alignment_loss(pred, torch.zeros(0, 16))
    assert empty.item() == 0.0 and empty.requires_grad
    assert embedding_regression_loss(pred, torch.zeros(0, 16)).item() == 0.0


def test_embedding_regression_loss_is_mse_on_the_unit_sphere_or_l1():
    pred, target = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert embedding_regression_loss(pred, target, "mse").item() == pytest.approx(1.0)  # ((1-0)^2 + (0-1)^2) / 2
    assert embedding_regression_loss(pred, target, "l1").item() == pytest.approx(2.0)  # (3 + 1) / 2


def test_gathered_negatives_on_a_single_rank_equal_the_local_loss(tmp_path):
    torch.manual_seed(3)
    pred, target = torch.randn(4, 8), torch.randn(4, 8)
    local = contrastive_alignment_loss(pred, target)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        gathered = contrastive_alignment_loss(pred, target, gather_distributed=True)
    finally:
        dist.destroy_process_group()
    assert torch.allclose(local, gathered)


def test_dn_alignment_slot_choices():
    # 2 groups, image 0 with 2 objects, image 1 with 1: the criterion's group-major DN positives.
    dn = [(torch.tensor([0, 1, 4, 5]), torch.tensor([0, 1, 0, 1])), (torch.tensor([0, 4]), torch.tensor([0, 0]))]
    first = dn_alignment_indices(dn, 2, "first_group")
    assert [s.tolist() for s, _ in first] == [[0, 1], [0]] and [t.tolist() for _, t in first] == [[0, 1], [0]]
    released = dn_alignment_indices(dn, 2, "released")  # first 3 of the concatenation: image 0's 4 slots cut
    assert [s.tolist() for s, _ in released] == [[0, 1, 4], []]
    assert dn_alignment_indices(dn, 2, "all_groups") is dn
    assert all(len(s) == 0 for s, _ in dn_alignment_indices(dn, 2, "none"))


# ------------------------------------------------------------------------------ mutual enhancement
def test_mutual_enhancement_layer_follows_the_released_order():
    torch.manual_seed(4)
    module = MutualEnhancement(dim=16, object_dim=16, num_layers=1, num_heads=4, mlp_dim=32)
    memory, objects = torch.randn(1, 10, 16), torch.randn(3, 16)
    enhanced_memory, (enhanced_objects,) = module(memory, [objects])
    layer = module.layers[0]
    img = module.image_norm(module.image_projection(memory[0]))

    def mha(attn, q, k):  # plain multi-head attention with the module's own projections
        heads = attn.num_heads
        qh, kh, vh = (x.view(x.shape[0], heads, -1).transpose(0, 1) for x in (attn.q_proj(q), attn.k_proj(k),
                                                                                attn.v_proj(k)))
        w = torch.softmax(qh @ kh.transpose(1, 2) / math.sqrt(qh.shape[-1]), -1)
        return attn.out_proj((w @ vh).transpose(0, 1).reshape(q.shape[0], -1))

    obj = layer.norm1(objects + mha(layer.self_attn, objects, objects))
    obj = layer.norm2(obj + mha(layer.cross_attn_object_to_image, obj, img))
    obj = layer.norm3(obj + layer.mlp(obj))
    img = layer.norm4(img + mha(layer.cross_attn_image_to_object, img, obj))
    assert torch.allclose(enhanced_objects, obj, atol=1e-5)
    assert torch.allclose(enhanced_memory[0], img, atol=1e-5)
    assert isinstance(layer.mlp[1], torch.nn.ReLU) and layer.mlp[0].out_features == 32


def test_mutual_enhancement_runs_per_image_and_ignores_padding():
    torch.manual_seed(5)
    module = MutualEnhancement(dim=16, object_dim=24, num_layers=2, num_heads=8, mlp_dim=32)
    memory = torch.randn(3, 12, 16)
    padding = torch.zeros(3, 12, dtype=torch.bool)
    padding[1, 8:] = True
    objects = [torch.randn(4, 24), torch.randn(1, 24), torch.zeros(0, 24)]
    batched_memory, batched_objects = module(memory, objects, padding)
    for b in range(3):
        keep = ~padding[b]
        alone_memory, (alone_objects,) = module(memory[b:b + 1, keep], [objects[b]])
        assert torch.allclose(batched_memory[b, keep], alone_memory[0], atol=1e-5)
        assert torch.allclose(batched_objects[b], alone_objects, atol=1e-5)
    assert batched_objects[2].shape == (0, 16) and torch.isfinite(batched_memory).all()
    changed = memory.clone()
    changed[1, 8:] = 100.0  # padding content must not matter
    assert torch.allclose(module(changed, objects, padding)[1][1], batched_objects[1], atol=1e-5)


# ------------------------------------------------------------------------------ MutDet
def test_mutdet_loss_keys_follow_the_paper_names():
    model, criterion = mutdet()
    images, mask, targets = make_batch()
    losses = criterion(model(images, mask, targets), targets)
    align = sorted(k for k in losses if "align" in k)
    assert align == ["enhanced_align_dn", "enhanced_align_encoder", "enhanced_align_query",
                     "siamese_align_dn", "siamese_align_query"]
    detection = {k[len("siamese_"):] for k in losses if k.startswith("siamese_") and "align" not in k}
    assert detection == {k[len("enhanced_"):] for k in losses if k.startswith("enhanced_") and "align" not in k}
    assert {"loss_cls", "enc_loss_bbox", "dn_loss_angle", "loss_iou_0"} <= detection
    assert set(losses) == {k for k in losses if k.startswith(("enhanced_", "siamese_"))}
    for key in detection:  # both passes at equal weight
        assert criterion.weight_dict["enhanced_" + key] == criterion.weight_dict["siamese_" + key]
    assert all(criterion.weight_dict[k] == 1.0 for k in align)
    assert all(torch.isfinite(v) for v in losses.values())


def test_enhanced_pass_decodes_the_enhanced_memory_ranked_by_similarity_times_objectness():
    model, _ = mutdet()
    model.eval()
    images, mask, targets = make_batch(counts=(3, 0))
    out = model(images, mask, targets)
    enc = model.detector.encode(images, mask)
    assert torch.allclose(out["siamese"]["memory"], enc["memory"], atol=1e-6)
    assert not torch.allclose(out["enhanced"]["memory"], enc["memory"], atol=1e-3)
    enhanced = out["enhanced"]
    stage = model.detector.decoder.num_layers
    objectness = model.detector.heads.class_branches[stage](enhanced["memory"])[..., 0]
    assert torch.allclose(enhanced["enc_outputs"]["pred_logits"][..., 0], objectness, atol=1e-5)
    scores = selection_scores(enhanced["token_embeddings"], out["alignment_targets"], objectness)
    valid = ~enc["memory_padding_mask"]
    expected = select_topk(scores, valid, model.detector.num_queries)
    assert torch.equal(enhanced["enc_outputs"]["topk_indices"], expected)
    # image 0: similarity x logit differs from the plain objectness ranking; image 1 (no object): logit only
    assert torch.equal(expected[1], select_topk(objectness, valid, model.detector.num_queries)[1])


def test_alignment_gradients_reach_encoder_decoder_and_enhancement_module():
    model, criterion = mutdet()
    images, mask, targets = make_batch()
    losses = criterion(model(images, mask, targets), targets)
    sum(v for k, v in losses.items() if "align" in k).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    for prefix in ("detector.encoder.layers.0.", "detector.decoder.layers.0.", "detector.decoder.layers.1.",
                   "mutual_enhancement.layers.0.", "mutual_enhancement.layers.2.norm4.",
                   "mutual_enhancement.image_projection.", "embedding_head.", "encoder_embedding_head."):
        assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith(prefix)), prefix


def test_siamese_alignment_reaches_the_enhancement_module_only_through_its_targets():
    model, criterion = mutdet()
    images, mask, targets = make_batch()
    losses = criterion(model(images, mask, targets), targets)
    losses["siamese_align_query"].backward()
    grad = dict(model.named_parameters())
    assert grad["mutual_enhancement.layers.0.self_attn.q_proj.weight"].grad.abs().sum() > 0  # targets not detached
    last_image_update = grad["mutual_enhancement.layers.2.norm4.weight"].grad
    assert last_image_update is None or last_image_update.abs().sum() == 0  # F_enh is not in this loss


def test_every_switch_off_is_detreg_exactly():
    images, mask, targets = make_batch(counts=(3, 1))
    torch.manual_seed(0)
    detreg, detreg_criterion = build_pretrainer(dict(method="detreg", embedding_dim=E), TINY_DETECTOR)
    off = dict(contrastive_loss=False, enhanced_embedding=False, enhanced_feature=False, encoder_loss=False,
               calibration="none")
    model, criterion = mutdet(**off)
    model.load_state_dict(detreg.state_dict())  # strict: the same parameters under the same names
    detreg.train(), model.train()
    torch.manual_seed(7)  # same DN noise and dropout
    expected = detreg_criterion(detreg(images, mask, targets), targets)
    torch.manual_seed(7)
    losses = criterion(model(images, mask, targets), targets)
    assert set(losses) == set(expected)
    for key in expected:
        assert torch.equal(losses[key], expected[key]), key
    assert total_loss(losses, criterion.weight_dict) == total_loss(expected, detreg_criterion.weight_dict)


TABLE7 = {**TABLE7_ROWS, **{f"row6_{k}": v for k, v in TABLE7_ROW6_CANDIDATES.items()}}


@pytest.mark.parametrize("row", sorted(TABLE7))
def test_table7_rows_run_with_their_losses_and_ddp_flag(row):
    cfg = ablation_config("table7", row, embedding_dim=E)
    torch.manual_seed(0)
    model, criterion = build_pretrainer(cfg, TINY_DETECTOR)
    images, mask, targets = make_batch()
    out = model(images, mask, targets)
    losses = criterion(out, targets)
    total_loss(losses, criterion.weight_dict).backward()
    switches = TABLE7[row]
    assert criterion.contrastive_loss == switches["contrastive_loss"]
    raw = [t["embeddings"] for t in targets]
    assert all(a is b for a, b in zip(out["alignment_targets"], raw)) == (not switches["enhanced_embedding"])
    prefix = "enhanced_" if switches["enhanced_feature"] else ""
    assert (prefix + "align_encoder" in losses) == switches["encoder_loss"]
    assert ("siamese_align_query" in losses) == (switches.get("calibration") == "siamese_head")
    assert (model.mutual_enhancement is not None) == (switches["enhanced_embedding"] or switches["enhanced_feature"])
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert bool(unused) == model.find_unused_parameters, unused
    assert set(losses) <= set(criterion.weight_dict)


def test_ablation_tables():
    def ticks(row):
        return sum(v is True for v in row.values()) + (row["calibration"] == "siamese_head")

    assert [ticks(TABLE7_ROWS[r]) for r in sorted(TABLE7_ROWS)] == [0, 1, 2, 3, 4, 4, 5]  # the paper's tick counts
    assert all(ticks(row) == 3 for row in TABLE7_ROW6_CANDIDATES.values())
    assert ablation_config("table1", "siamese_head") == ablation_config("table7", "row8_mutdet")
    with pytest.raises(ValueError, match="known rows"):
        ablation_config("table7", "row6")


@pytest.mark.parametrize("calibration,keys", [
    ("none", set()), ("encoder_feature_distillation", {"distill_encoder"}),
    ("decoder_cross_distillation", {"distill_decoder_cls", "distill_decoder_embed"}),
    ("siamese_head", {"siamese_align_query"})])
def test_table1_calibrations(calibration, keys):
    torch.manual_seed(0)
    model, criterion = build_pretrainer(ablation_config("table1", calibration, embedding_dim=E), TINY_DETECTOR)
    images, mask, targets = make_batch()
    out = model(images, mask, targets)
    losses = criterion(out, targets)
    extra = {k for k in losses if k.startswith(("distill_", "siamese_"))}
    if calibration == "siamese_head":  # a whole second set of detection + alignment losses
        assert keys <= extra and {"siamese_loss_cls", "siamese_enc_loss_bbox"} <= extra
        assert not any(k.startswith("distill_") for k in extra)
    else:
        assert extra == keys
    if calibration == "decoder_cross_distillation":  # student and teacher decode the same proposals
        student, teacher = out["decoder_distillation"]["student"], out["decoder_distillation"]["teacher"]
        assert torch.equal(student["enc_outputs"]["topk_indices"], teacher["enc_outputs"]["topk_indices"])
        assert torch.equal(student["memory"], out["encoder_distillation"]["student"]) if "encoder_distillation" in out \
            else not torch.allclose(student["memory"], teacher["memory"], atol=1e-3)  # plain F vs F_enh
    total_loss(losses, criterion.weight_dict).backward()
    if calibration == "encoder_feature_distillation":
        grad = dict(model.named_parameters())["mutual_enhancement.image_projection.weight"].grad
        assert grad is not None  # from the alignment losses; the distillation teacher itself is detached


def test_switch_validation():
    with pytest.raises(ValueError, match="needs enhanced_feature"):
        mutdet(enhanced_feature=False)
    with pytest.raises(ValueError, match="unknown config keys"):
        mutdet(siamese=True)
    with pytest.raises(ValueError, match="calibration"):
        mutdet(calibration="siamese")
    with pytest.raises(ValueError, match="true or false"):
        mutdet(encoder_loss="yes")
    with pytest.raises(ValueError, match="not one of"):
        build_pretrainer({"method": "soco"}, TINY_DETECTOR)
    model, criterion = mutdet()
    images, mask, targets = make_batch()
    targets[1] = dict(targets[1], embeddings=torch.zeros(2, E + 1))
    with pytest.raises(ValueError, match="target 1: 'embeddings' must be"):
        model(images, mask, targets)


def test_encoder_alignment_topk_uses_only_selected_tokens():
    model, criterion = mutdet(encoder_alignment="topk")
    images, mask, targets = make_batch()
    out = model(images, mask, targets)
    from mutdet_core.pretraining.mutdet_criterion import topk_encoder_indices
    pairs = topk_encoder_indices(criterion.detection.matcher, out["enhanced"]["enc_outputs"], targets)
    for b, (tokens, gts) in enumerate(pairs):
        assert set(tokens.tolist()) <= set(out["enhanced"]["enc_outputs"]["topk_indices"][b].tolist())
        assert len(gts) == len(targets[b]["labels"])
    assert torch.isfinite(criterion(out, targets)["enhanced_align_encoder"])


@pytest.mark.parametrize("counts", [(0, 0), (2, 0)])
def test_images_without_pseudo_boxes(counts):
    model, criterion = mutdet()
    images, mask, targets = make_batch(counts=counts)
    losses = criterion(model(images, mask, targets), targets)
    assert all(torch.isfinite(v) for v in losses.values())
    total_loss(losses, criterion.weight_dict).backward()
    if counts == (0, 0):
        assert all(losses[k].item() == 0.0 for k in losses if "align" in k)


def test_batched_outputs_equal_single_image_outputs():
    model, _ = mutdet()
    model.eval()
    images, mask, targets = make_batch(counts=(3, 1))
    batched = model(images, mask, targets)
    for b in range(2):
        alone = model(images[b:b + 1], mask[b:b + 1], targets[b:b + 1])
        for name in ("enhanced", "siamese"):
            for key in ("pred_boxes", "pred_logits", "query_embeddings"):
                assert torch.allclose(batched[name][key][b], alone[name][key][0], atol=1e-4), (name, key)
        assert torch.allclose(batched["alignment_targets"][b], alone["alignment_targets"][0], atol=1e-5)


@pytest.mark.parametrize("method", ["mutdet", "detreg"])
def test_losses_go_down(method):
    torch.manual_seed(0)
    model, criterion = build_pretrainer(dict(method=method, embedding_dim=E), TINY_DETECTOR)
    history = train_steps(model, criterion, make_batch(), steps=36)
    align = [k for k in history[0] if "align" in k]
    assert history[-1]["total"] < 0.8 * history[0]["total"]
    for key in align:
        assert np.mean([h[key] for h in history[-4:]]) < 0.8 * np.mean([h[key] for h in history[:4]]), key


def test_mutdet_on_a_real_dota_tile(shared_data):
    """A real DOTA image (P1888) resized to 128 x 96 with its annotated boxes as pseudo-boxes and random
    pseudo-classes / embeddings: the enhanced and siamese passes run, and the loss goes down."""
    import cv2

    from mutdet_core.datasets.dota import read_dota_txt
    from mutdet_core.geometry import poly2obb

    record = read_dota_txt(shared_data / "dota_sample" / "labelTxt" / "P1888.txt",
                           shared_data / "dota_sample" / "images" / "P1888.png")
    image = cv2.imread(str(record.image_path))[:, :, ::-1]
    height, width = image.shape[:2]
    size = (128, 96)
    image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR).astype(np.float32)
    polys = np.asarray(record.polygons, dtype=np.float64) * np.tile([size[0] / width, size[1] / height], 4)
    obbs = torch.as_tensor(np.asarray(poly2obb(polys, "le90")), dtype=torch.float32).reshape(-1, 5)
    obbs = obbs[(obbs[:, 2] >= 2) & (obbs[:, 3] >= 2)][:40]
    n = len(obbs)
    assert n > 3
    generator = torch.Generator().manual_seed(0)
    target = {"labels": torch.randint(0, 256, (n,), generator=generator),
              "boxes": obbs[:, :4] / torch.tensor([size[0], size[1], size[0], size[1]]),
              "angles": obbs[:, 4], "embeddings": F.normalize(torch.randn(n, E, generator=generator), dim=-1)}
    mean, std = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
    tensor = torch.as_tensor((image - mean) / std, dtype=torch.float32).permute(2, 0, 1)[None]
    batch = (tensor, torch.zeros(1, size[1], size[0], dtype=torch.bool), [target])
    model, criterion = mutdet()
    history = train_steps(model, criterion, batch, steps=12)
    assert history[-1]["total"] < history[0]["total"]
    assert history[-1]["enhanced_align_query"] < history[0]["enhanced_align_query"]
