"""DETReg as MutDet's authors re-implemented it on ARS-DETR (reference baselines_and_sam.md 1.3, 1.6, 5).

Same detector, same pseudo-labels as MutDet: SAM boxes with le90 angles, 256 k-means pseudo-classes, and
PCA-256 L2-normalised object embeddings computed offline (the original computes SwAV embeddings online).
The detector is trained with its full ARS-DETR detection loss (focal over the 256 pseudo-classes, L1,
horizontal GIoU, AR-CSL angle, on every decoder layer, the encoder proposals and DN) plus:

- object-embedding loss ``align_query``: an embedding head MLP(D, D, E) (two layers, the released
  ``feature_embed``) on the **last** decoder layer's outputs (after the decoder LayerNorm) of the Hungarian-
  matched queries, regressed onto the matched objects' embeddings. Default ``embed_loss='mse'``: MSE between
  L2-normalised vectors, weight 1 (MutDet's note "L1 loss changed to L2 on the unit sphere");
  ``embed_loss='l1'``: the original DETReg (L1, mean over pairs x dims, weight 1);
- ``align_dn`` (default on): the same loss on the positive DN queries of the last layer (MutDet's notes on
  their re-implementation, "DetRegv2: the DN branch also gets the alignment loss"); ``align_dn: false``
  is the original DETReg, which had no DN. ``dn_alignment`` picks the DN slots (contrastive_alignment.py).

Adaptations to ARS-DETR, on purpose: matching is ARS-DETR's (class focal + L1 + GIoU + angle) over 256
pseudo-classes instead of DETReg's class-agnostic label 1; the embedding is not a matching cost (as in
DETReg). Loss keys: the detector's own (``loss_cls``, ``enc_loss_bbox``, ``dn_loss_iou_0`` ...) plus
``align_query`` and ``align_dn``; they are named like MutDet's plain pass so that MutDet with every switch
off returns the same dict.
"""
from __future__ import annotations

from torch import Tensor, nn

from ..models.criterion import SetCriterion
from ..models.detector import ARSDETR
from ..models.heads import MLP
from .contrastive_alignment import dn_alignment_indices, embedding_regression_loss, matched_pairs
from .pseudo_targets import object_embeddings


class DETReg(nn.Module):
    """Detector + object-embedding head.

    Output: the detector's dict (docs/DETECTOR_CONTRACT.md) plus ``query_embeddings`` (B, Q, E) of the last
    decoder layer and, with DN, ``dn_query_embeddings`` (B, P, E).
    """

    find_unused_parameters = False

    def __init__(self, detector: ARSDETR, embedding_dim: int = 256):
        super().__init__()
        self.detector = detector
        self.embedding_dim = embedding_dim
        d_model = detector.encoder.level_embed.shape[1]
        self.embedding_head = MLP(d_model, d_model, embedding_dim, 2)

    def forward(self, images: Tensor, padding_mask: Tensor | None = None, targets: list[dict] | None = None) -> dict:
        if self.training:
            object_embeddings(targets, self.embedding_dim)
        out = self.detector(images, padding_mask, targets)
        out["query_embeddings"] = self.embedding_head(out["hs"][-1])
        if out["dn_outputs"] is not None:
            out["dn_query_embeddings"] = self.embedding_head(out["dn_outputs"]["hs"][-1])
        return out

    def on_iteration(self, iteration: int, total_iterations: int) -> None:
        """No per-iteration state (the engine calls this hook on every method)."""


class DETRegCriterion(nn.Module):
    """Detection losses + object-embedding loss (module docstring).

    Args:
        detection: the detector's ``SetCriterion`` (256 pseudo-classes).
        embed_loss: 'mse' (re-implementation) or 'l1' (original DETReg).
        embed_weight: weight of ``align_query`` / ``align_dn`` (1).
        align_dn: also align the positive DN queries.
        dn_alignment: which DN slots ('first_group', 'all_groups', 'released').
    """

    def __init__(self, detection: SetCriterion, embed_loss: str = "mse", embed_weight: float = 1.0,
                 align_dn: bool = True, dn_alignment: str = "first_group"):
        super().__init__()
        self.detection = detection
        self.embed_loss = embed_loss
        self.align_dn = align_dn
        self.dn_alignment = dn_alignment
        self.weight_dict = dict(detection.weight_dict)
        self.weight_dict["align_query"] = embed_weight
        if align_dn:
            self.weight_dict["align_dn"] = embed_weight

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, Tensor]:
        embeddings = object_embeddings(targets, outputs["query_embeddings"].shape[-1])
        losses, indices = self.detection(outputs, targets, return_indices=True)
        pred, tgt = matched_pairs(outputs["query_embeddings"], embeddings, indices["last"])
        losses["align_query"] = embedding_regression_loss(pred, tgt, self.embed_loss)
        if self.align_dn:
            if outputs.get("dn_query_embeddings") is not None:
                dn_meta = outputs["dn_outputs"]["dn_meta"]
                dn_idx = dn_alignment_indices(indices["dn"], dn_meta["num_groups"], self.dn_alignment)
                pred, tgt = matched_pairs(outputs["dn_query_embeddings"], embeddings, dn_idx)
            else:  # no object in the batch: no DN queries
                pred, tgt = outputs["query_embeddings"][:0, 0], embeddings[0][:0]
            losses["align_dn"] = embedding_regression_loss(pred, tgt, self.embed_loss)
        for key in losses:
            if key not in self.weight_dict:  # stage keys the detection criterion added lazily
                self.weight_dict[key] = self.detection.weight_dict[key]
        return losses


def build_detreg(detector: ARSDETR, detection: SetCriterion, cfg: dict) -> tuple[DETReg, DETRegCriterion]:
    """Keys: ``embedding_dim`` (256), ``embed_loss`` ('mse'), ``embed_weight`` (1.0), ``align_dn`` (True),
    ``dn_alignment`` ('first_group')."""
    model = DETReg(detector, int(cfg.get("embedding_dim", 256)))
    criterion = DETRegCriterion(detection, cfg.get("embed_loss", "mse"), float(cfg.get("embed_weight", 1.0)),
                                bool(cfg.get("align_dn", True)), cfg.get("dn_alignment", "first_group"))
    return model, criterion
