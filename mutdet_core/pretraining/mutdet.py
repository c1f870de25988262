"""MutDet pre-training model (paper Sec. 3.2-3.5; released ``DETRegRotatedDETRFast`` + template-matching
transformer + ``DETReg_DNARSDeformableDETRHeadv7``).

One encoder pass, then up to two decoding passes that share the encoder, the encoder-proposal branches,
the decoder, the content queries, the DN queries (the same noisy sample and attention mask) and every
head:

- **enhanced pass** (the paper's main MutDet path; the release's ``p_``-prefixed "patch" branch): the
  mutual enhancement module turns the encoder memory F and the object embeddings O into F_enh and O_enh.
  The encoder-stage heads read F_enh directly (the release's ``patch_enc_output`` Linear + LN was applied
  inside the module, before the layers). Proposals are ranked by
  ``max_j cos(Zenc_i, O_enh_j) * objectness_logit_i`` (the raw logit, as released), with encoder predicted
  embeddings Zenc = ``encoder_embedding_head``(F_enh) = MLP(D, 4D, D) (released ``patch_enc_decode``,
  256 -> 1024 -> 256). The decoder's values are F_enh.
- **auxiliary siamese head** (paper Sec. 3.5; the release's *unprefixed* "main" branch): the plain ARS-DETR
  path on F (``two_stage.enc_output`` + LN, top-K by objectness), exactly what fine-tuning runs.

Predicted query embeddings come from ``embedding_head`` = MLP(D, D, D) (released ``feature_embed``) on the
last decoder layer (after the decoder LayerNorm), for matching queries and DN queries of both passes.

Switches (method config keys; Table 7 columns, Table 1 rows), all on = the released MutDet:

| key                  | on (default)                                   | off                                      |
|----------------------|------------------------------------------------|------------------------------------------|
| contrastive_loss     | symmetric InfoNCE (T 0.2, 2T per direction)    | DETReg's MSE on normalised embeddings     |
| enhanced_embedding   | targets = O_enh (L2-normalised, not detached)  | targets = the raw PCA embeddings          |
| enhanced_feature     | the decoder decodes F_enh (enhanced pass)      | one plain pass on F (keys unprefixed)     |
| encoder_loss         | alignment of Hungarian-matched encoder tokens  | none; enhanced top-K by objectness only   |
| calibration          | 'siamese_head' (Table 1 row 4)                 | 'none', 'encoder_feature_distillation',   |
|                      |                                                | 'decoder_cross_distillation' (rows 1-3)   |

``calibration`` needs ``enhanced_feature`` (it calibrates the enhanced pass towards plain F); with
``enhanced_feature: false`` it must be 'none'. The enhancement module exists when ``enhanced_embedding`` or
``enhanced_feature`` is on. With every switch off the model is DETReg (``detreg.py``) exactly.

Output dict (per pass: the detector's dict of docs/DETECTOR_CONTRACT.md plus ``query_embeddings`` (B, Q, E'),
``dn_query_embeddings`` (B, P, E') with DN, ``token_embeddings`` (B, S, E') with the encoder loss):
    ``enhanced`` / ``siamese`` (enhanced_feature on) or ``plain`` (off);
    ``alignment_targets``: B tensors (n_b, E'): O_enh or the raw embeddings;
    ``encoder_distillation``: {'student' F (B, S, D), 'teacher' F_enh detached, 'mask' (B, S) valid};
    ``decoder_distillation``: {'student': plain-memory pass decoded from the enhanced pass's proposals,
    'teacher': the enhanced pass}.
E' = D when the targets are O_enh (O_enh is D wide), else E (the PCA width); both 256 in the paper.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.detector import ARSDETR
from ..models.heads import MLP
from ..models.two_stage import gen_encoder_output_proposals
from .method_config import CALIBRATIONS, SWITCHES  # noqa: F401  (torch-free home of the choices)
from .mutual_enhancement import build_mutual_enhancement
from .pseudo_targets import object_embeddings


def selection_scores(token_embeddings: Tensor, objects: list[Tensor], objectness: Tensor) -> Tensor:
    """Enhanced-pass top-K ranking: max over objects of cos(token, object) times the raw objectness logit.

    token_embeddings (B, S, E), objects B x (n_b, E), objectness (B, S) -> (B, S). An image without
    objects has no similarity to take: it is ranked by the logit alone.
    """
    tokens = F.normalize(token_embeddings, dim=-1)
    scores = []
    for b, obj in enumerate(objects):
        if len(obj) == 0:
            scores.append(objectness[b])
            continue
        similarity = tokens[b] @ F.normalize(obj.to(tokens.dtype), dim=-1).T  # (S, n_b)
        scores.append(similarity.max(-1).values * objectness[b])
    return torch.stack(scores)


class MutDet(nn.Module):
    """MutDet pre-training model with the ablation switches of Tables 1 and 7 (module docstring).

    Args:
        detector: ARS-DETR built with 256 pseudo-classes and a frozen backbone.
        embedding_dim: E, width of the pseudo-label embeddings (256).
        contrastive_loss, enhanced_embedding, enhanced_feature, encoder_loss: Table 7 switches.
        calibration: Table 1 row, one of ``CALIBRATIONS``.
        enhancement_cfg: ``enhancement_layers`` (3), ``enhancement_heads`` (8), ``enhancement_mlp_dim`` (2048).
    """

    def __init__(self, detector: ARSDETR, embedding_dim: int = 256, contrastive_loss: bool = True,
                 enhanced_embedding: bool = True, enhanced_feature: bool = True, encoder_loss: bool = True,
                 calibration: str = "siamese_head", enhancement_cfg: dict | None = None,
                 released_encoder_embedding_init: bool = False):
        super().__init__()
        if calibration not in CALIBRATIONS:
            raise ValueError(f"unknown calibration {calibration!r}; expected one of {CALIBRATIONS}")
        if not enhanced_feature and calibration != "none":
            raise ValueError(f"calibration {calibration!r} calibrates the enhanced pass against the plain memory "
                             f"and needs enhanced_feature: true; with enhanced_feature: false set calibration: none")
        if detector.decoder.style != "dino":
            raise ValueError("MutDet shares learned content queries and DN queries between its passes: it needs "
                             "the ARS-DETR (DN, 'dino' decoder) variant")
        self.detector = detector
        self.embedding_dim = embedding_dim
        self.contrastive_loss = contrastive_loss
        self.enhanced_embedding = enhanced_embedding
        self.enhanced_feature = enhanced_feature
        self.encoder_loss = encoder_loss
        self.calibration = calibration
        d_model = detector.encoder.level_embed.shape[1]
        self.mutual_enhancement = (build_mutual_enhancement(d_model, embedding_dim, enhancement_cfg or {})
                                   if enhanced_embedding or enhanced_feature else None)
        target_dim = d_model if enhanced_embedding else embedding_dim
        self.embedding_head = MLP(d_model, d_model, target_dim, 2)
        self.encoder_embedding_head = MLP(d_model, 4 * d_model, target_dim, 2) if encoder_loss else None
        if released_encoder_embedding_init and self.encoder_embedding_head is not None:
            # Released ``patch_enc_decode`` lives in the transformer, whose init_weights Xavier-initialises
            # every >1-d parameter (biases keep PyTorch's default); False keeps PyTorch's default Linear init.
            for layer in self.encoder_embedding_head.layers:
                nn.init.xavier_uniform_(layer.weight)
        # DDP must look for parameters without a gradient when some module takes part in no loss: without
        # the siamese head ``two_stage.enc_output`` is unused; without the enhanced feature the last
        # enhancement layer's image update is.
        self.find_unused_parameters = ((self.mutual_enhancement is not None and not enhanced_feature)
                                       or (enhanced_feature and calibration != "siamese_head"))

    @property
    def passes(self) -> tuple[str, ...]:
        """Names of the detection passes this configuration runs (also the loss-key prefixes)."""
        if not self.enhanced_feature:
            return ("plain",)
        return ("enhanced", "siamese") if self.calibration == "siamese_head" else ("enhanced",)

    def _add_query_embeddings(self, out: dict) -> dict:
        out["query_embeddings"] = self.embedding_head(out["hs"][-1])
        if out["dn_outputs"] is not None:
            out["dn_query_embeddings"] = self.embedding_head(out["dn_outputs"]["hs"][-1])
        return out

    def forward(self, images: Tensor, padding_mask: Tensor | None = None, targets: list[dict] | None = None) -> dict:
        """images (B, 3, H, W), padding_mask (B, H, W) bool, targets with 'embeddings' -> output dict (module
        docstring)."""
        objects = object_embeddings(targets, self.embedding_dim)
        det = self.detector
        enc = det.encode(images, padding_mask)
        dn = det.prepare_denoising(targets, min(det.num_queries, enc["memory"].shape[1]))
        out: dict = {}
        alignment_targets = objects
        if self.mutual_enhancement is not None:
            _, valid = gen_encoder_output_proposals(enc["memory_padding_mask"], enc["spatial_shapes"],
                                                    det.two_stage.box_dim, enc["memory"].dtype)
            enhanced_memory, enhanced_objects = self.mutual_enhancement(
                enc["memory"], objects, enc["memory_padding_mask"], valid)
            if self.enhanced_embedding:
                alignment_targets = enhanced_objects
        out["alignment_targets"] = alignment_targets

        if not self.enhanced_feature:
            plain = self._add_query_embeddings(det.detect_from_memory(enc, dn))
            if self.encoder_loss:
                plain["token_embeddings"] = self.encoder_embedding_head(enc["memory"])
            out["plain"] = plain
            return out

        # Enhanced pass: the encoder-stage head reads F_enh; only its objectness channel is needed to rank.
        stage = det.decoder.num_layers
        classifier = det.heads.class_branches[stage]
        objectness = F.linear(enhanced_memory, classifier.weight[:1], classifier.bias[:1])[..., 0]
        token_embeddings = None
        scores = objectness
        if self.encoder_embedding_head is not None:
            token_embeddings = self.encoder_embedding_head(enhanced_memory)
            scores = selection_scores(token_embeddings.detach(), [o.detach() for o in alignment_targets],
                                      objectness.detach())
        enhanced = det.detect_from_memory(enc, dn, memory=enhanced_memory, proposal_features=enhanced_memory,
                                          selection_scores=scores)
        enhanced = self._add_query_embeddings(enhanced)
        if token_embeddings is not None:
            enhanced["token_embeddings"] = token_embeddings
        out["enhanced"] = enhanced

        if self.calibration == "siamese_head":
            out["siamese"] = self._add_query_embeddings(det.detect_from_memory(enc, dn))
        elif self.calibration == "encoder_feature_distillation":
            out["encoder_distillation"] = {"student": enc["memory"], "teacher": enhanced_memory.detach(),
                                           "mask": ~enc["memory_padding_mask"]}
        elif self.calibration == "decoder_cross_distillation":
            # Same proposals (same top-K, same references) as the enhanced pass, values from plain F, so the
            # two decoder outputs correspond query by query.
            student = det.detect_from_memory(enc, dn, memory=enc["memory"],
                                             proposal_features=enhanced_memory.detach(), selection_scores=scores)
            out["decoder_distillation"] = {"student": self._add_query_embeddings(student), "teacher": enhanced}
        return out

    def on_iteration(self, iteration: int, total_iterations: int) -> None:
        """No per-iteration state (the engine calls this hook on every method)."""
