"""Calibration losses of Table 1 (paper Sec. 3.5): alternatives to the auxiliary siamese head.

The enhancement module makes the enhanced pass easier than fine-tuning (no object embeddings there). A
calibration makes the plain encoder feature F and the decoder on F follow the enhanced ones. The paper
describes the two distillation variants in words only; what is fixed here (assumptions, documented):

- **encoder feature distillation** (``distill_encoder``), after "simple knowledge distillation" [6]:
  MSE between F (student) and F_enh (teacher, detached), mean over the non-padding tokens and channels.
- **decoder cross distillation** (``distill_decoder_cls``, ``distill_decoder_embed``), after [30]: F is
  decoded by the shared decoder from the *same* proposals as the enhanced pass (same top-K, references,
  queries and DN queries), so the two outputs correspond query by query; the student's last-layer outputs
  (matching and DN queries) are distilled from the enhanced pass's (detached):
  classification by the knowledge-distillation quality focal loss
      sum_c BCE(s_c, t_c) * |t_c - sigmoid(s_c)|^2,  t = sigmoid(teacher logits), mean over queries,
  and embeddings by MSE between L2-normalised student and teacher query embeddings (the paper names an
  embedding-alignment loss whose symbol is lost; MSE matches DETReg's re-implemented loss).
  The student pass gets no pseudo-label loss (that is what separates it from the siamese head).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def encoder_feature_distillation_loss(student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
    """student, teacher (B, S, D); mask (B, S) bool, True on tokens to use -> scalar MSE."""
    weights = mask[..., None].to(student.dtype)
    count = weights.sum() * student.shape[-1]
    return ((student.float() - teacher.float()) ** 2 * weights).sum() / count.clamp(min=1.0)


def quality_focal_distillation(student_logits: Tensor, teacher_logits: Tensor, beta: float = 2.0) -> Tensor:
    """(N, C) student logits, (N, C) teacher logits -> scalar (mean over N of the sum over classes)."""
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    target = teacher_logits.detach().float().sigmoid()
    logits = student_logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (bce * (target - logits.sigmoid()).abs().pow(beta)).sum(-1).mean()


def decoder_cross_distillation_losses(student: dict, teacher: dict) -> dict[str, Tensor]:
    """Last-layer distillation of the plain-memory decoding from the enhanced pass (module docstring).

    student, teacher: pass dicts with ``pred_logits`` (B, Q, C), ``query_embeddings`` (B, Q, E) and, with DN,
    ``dn_outputs['pred_logits']`` (L, B, P, C) and ``dn_query_embeddings`` (B, P, E).
    """
    s_logits, t_logits = [student["pred_logits"]], [teacher["pred_logits"]]
    s_emb, t_emb = [student["query_embeddings"]], [teacher["query_embeddings"]]
    if student.get("dn_outputs") is not None:
        s_logits.append(student["dn_outputs"]["pred_logits"][-1])
        t_logits.append(teacher["dn_outputs"]["pred_logits"][-1])
        s_emb.append(student["dn_query_embeddings"])
        t_emb.append(teacher["dn_query_embeddings"])
    num_classes, dim = s_logits[0].shape[-1], s_emb[0].shape[-1]
    s_logits = torch.cat([x.reshape(-1, num_classes) for x in s_logits])
    t_logits = torch.cat([x.reshape(-1, num_classes) for x in t_logits])
    s_emb = torch.cat([x.reshape(-1, dim) for x in s_emb])
    t_emb = torch.cat([x.reshape(-1, dim) for x in t_emb]).detach()
    embed = F.mse_loss(F.normalize(s_emb.float(), dim=-1), F.normalize(t_emb.float(), dim=-1))
    return {"distill_decoder_cls": quality_focal_distillation(s_logits, t_logits), "distill_decoder_embed": embed}
