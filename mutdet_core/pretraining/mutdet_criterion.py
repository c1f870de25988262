"""MutDet losses (paper Eqs. 3-7; released ``DETReg_DNARSDeformableDETRHeadv7``).

Per detection pass (``MutDet.passes``), at equal weight:
- the full ARS-DETR detection loss of ``SetCriterion`` (focal over the 256 pseudo-classes, L1, horizontal
  GIoU, AR-CSL angle; every decoder layer, the encoder proposals with binary labels, DN);
- ``align_query``: alignment of the Hungarian-matched queries of the last decoder layer;
- ``align_dn``: alignment of the positive DN queries of the last layer (``dn_alignment`` picks the slots);
- ``align_encoder`` (enhanced pass, or the plain pass with enhanced_feature off, when ``encoder_loss``):
  alignment of encoder tokens matched one-to-one by the criterion's encoder-stage Hungarian matching over
  **all** tokens (released, ``encoder_alignment: hungarian_all``), or only over the pass's top-K selected
  tokens (the paper's text, ``encoder_alignment: topk``).
Alignment = ``contrastive_alignment_loss`` (InfoNCE, the negatives of a set are all its other matched
pairs in the batch) or, with ``contrastive_loss`` off, DETReg's ``embedding_regression_loss``. Targets are
``outputs['alignment_targets']`` (O_enh, not detached: the gradient reaches the enhancement module).

Loss keys (``weight_dict`` maps every key; total = sum(weight_dict[k] * losses[k])):

| pass                 | prefix        | release prefix | example keys                                           |
|----------------------|---------------|----------------|--------------------------------------------------------|
| enhanced (main path) | ``enhanced_`` | ``p_``         | enhanced_loss_cls, enhanced_enc_loss_bbox,              |
|                      |               |                | enhanced_dn_loss_iou_0, enhanced_align_query,           |
|                      |               |                | enhanced_align_dn, enhanced_align_encoder               |
| siamese head         | ``siamese_``  | (none)         | siamese_loss_cls, siamese_align_query, siamese_align_dn |
| plain (EF off)       | (none)        |                | loss_cls, align_query, align_dn, align_encoder (DETReg) |

Release names: ``loss_embed`` = siamese_align_query, ``dn_loss_embed`` = siamese_align_dn,
``p_loss_embed`` = enhanced_align_query, ``p_dn_loss_embed`` = enhanced_align_dn, ``p_enc_loss_embed`` =
enhanced_align_encoder; ``p_loss_cls`` = enhanced_loss_cls, ``loss_cls`` = siamese_loss_cls and so on: the
release names the branches the other way round from the paper (its unprefixed branch is the siamese head).
Calibration keys: ``distill_encoder``; ``distill_decoder_cls``, ``distill_decoder_embed`` (calibration.py).
Alignment weights are 1 (the InfoNCE carries 2T per direction inside); detection weights are the detector's.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..models.criterion import PRED_KEYS, SetCriterion
from .calibration import decoder_cross_distillation_losses, encoder_feature_distillation_loss
from .contrastive_alignment import (contrastive_alignment_loss, dn_alignment_indices, embedding_regression_loss,
                                    matched_pairs)
from .method_config import ENCODER_ALIGNMENTS  # noqa: F401  (torch-free home of the choices)

PREFIXES = {"enhanced": "enhanced_", "siamese": "siamese_", "plain": ""}


def topk_encoder_indices(matcher: nn.Module, enc_outputs: dict, targets: list[dict]) -> list[tuple[Tensor, Tensor]]:
    """The paper's encoder alignment pairs: Hungarian matching (binary labels) restricted to the K selected
    tokens ``enc_outputs['topk_indices']`` (B, K); returns (token_idx, gt_idx) per image in token space."""
    topk = enc_outputs["topk_indices"]
    selected = {}
    for key in PRED_KEYS:
        value = enc_outputs[key]
        index = topk if value.dim() == 2 else topk[..., None].expand(-1, -1, value.shape[-1])
        selected[key] = torch.gather(value, 1, index)
    binary = [dict(t, labels=torch.zeros_like(t["labels"])) for t in targets]
    return [(topk[b][src], tgt) for b, (src, tgt) in enumerate(matcher(selected, binary))]


class MutDetCriterion(nn.Module):
    """Losses of ``MutDet`` (module docstring).

    Args:
        detection: the detector's ``SetCriterion`` (256 pseudo-classes).
        passes: the model's ``passes`` (loss-key prefixes are fixed per pass).
        contrastive_loss: InfoNCE (True) or DETReg's regression loss (False).
        temperature: InfoNCE T (0.2); direction_weight: per-direction weight (None = 2T).
        embed_loss: regression loss when ``contrastive_loss`` is off ('mse' or 'l1').
        dn_alignment: DN slots used ('first_group', 'all_groups', 'released', 'none').
        encoder_loss: align encoder tokens; encoder_alignment: 'hungarian_all' (released) or 'topk' (paper).
        align_weight: weight of every align_* key (1); distillation_weight: of every distill_* key (1).
        gather_distributed: InfoNCE negatives from every DDP rank.
    """

    def __init__(self, detection: SetCriterion, passes: tuple[str, ...], contrastive_loss: bool = True,
                 temperature: float = 0.2, direction_weight: float | None = None, embed_loss: str = "mse",
                 dn_alignment: str = "first_group", encoder_loss: bool = True,
                 encoder_alignment: str = "hungarian_all", align_weight: float = 1.0,
                 distillation_weight: float = 1.0, gather_distributed: bool = False):
        super().__init__()
        if encoder_alignment not in ENCODER_ALIGNMENTS:
            raise ValueError(f"unknown encoder_alignment {encoder_alignment!r}; expected one of {ENCODER_ALIGNMENTS}")
        self.detection = detection
        self.passes = tuple(passes)
        self.contrastive_loss = contrastive_loss
        self.temperature, self.direction_weight = temperature, direction_weight
        self.embed_loss = embed_loss
        self.dn_alignment = dn_alignment
        self.encoder_loss = encoder_loss
        self.encoder_alignment = encoder_alignment
        self.gather_distributed = gather_distributed
        self.weight_dict = {}
        for name in self.passes:
            prefix = PREFIXES[name]
            self.weight_dict.update({prefix + k: w for k, w in detection.weight_dict.items()})
            keys = ["align_query"] + (["align_dn"] if dn_alignment != "none" else [])
            if encoder_loss and name != "siamese":
                keys.append("align_encoder")
            self.weight_dict.update({prefix + k: align_weight for k in keys})
        for key in ("distill_encoder", "distill_decoder_cls", "distill_decoder_embed"):
            self.weight_dict[key] = distillation_weight

    def align(self, pred: Tensor, target: Tensor) -> Tensor:
        if self.contrastive_loss:
            return contrastive_alignment_loss(pred, target, self.temperature, self.direction_weight,
                                              self.gather_distributed)
        return embedding_regression_loss(pred, target, self.embed_loss)

    def pass_losses(self, name: str, out: dict, targets: list[dict], alignment_targets: list[Tensor]) -> dict:
        """Detection and alignment losses of one pass, keys prefixed."""
        losses, indices = self.detection(out, targets, return_indices=True)
        pred, tgt = matched_pairs(out["query_embeddings"], alignment_targets, indices["last"])
        losses["align_query"] = self.align(pred, tgt)
        if self.dn_alignment != "none":
            if out.get("dn_query_embeddings") is not None:
                dn_idx = dn_alignment_indices(indices["dn"], out["dn_outputs"]["dn_meta"]["num_groups"],
                                              self.dn_alignment)
                pred, tgt = matched_pairs(out["dn_query_embeddings"], alignment_targets, dn_idx)
            else:  # no object in the batch, so no DN query: a zero that keeps the graph
                pred, tgt = out["query_embeddings"][:0, 0], alignment_targets[0][:0]
            losses["align_dn"] = self.align(pred, tgt)
        if self.encoder_loss and "token_embeddings" in out:
            if self.encoder_alignment == "topk":
                enc_idx = topk_encoder_indices(self.detection.matcher, out["enc_outputs"], targets)
            else:
                enc_idx = indices["enc"]
            pred, tgt = matched_pairs(out["token_embeddings"], alignment_targets, enc_idx)
            losses["align_encoder"] = self.align(pred, tgt)
        prefix = PREFIXES[name]
        return {prefix + k: v for k, v in losses.items()}

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, Tensor]:
        """outputs of ``MutDet.forward``, targets (list of B dicts) -> dict of unweighted scalar losses."""
        alignment_targets = outputs["alignment_targets"]
        losses = {}
        for name in self.passes:
            losses.update(self.pass_losses(name, outputs[name], targets, alignment_targets))
        if "encoder_distillation" in outputs:
            d = outputs["encoder_distillation"]
            losses["distill_encoder"] = encoder_feature_distillation_loss(d["student"], d["teacher"], d["mask"])
        if "decoder_distillation" in outputs:
            d = outputs["decoder_distillation"]
            losses.update(decoder_cross_distillation_losses(d["student"], d["teacher"]))
        for key in losses:
            if key not in self.weight_dict:  # stage keys the detection criterion added lazily
                name = next(n for n in self.passes if key.startswith(PREFIXES[n]))
                self.weight_dict[key] = self.detection.weight_dict[key[len(PREFIXES[name]):]]
        return losses
