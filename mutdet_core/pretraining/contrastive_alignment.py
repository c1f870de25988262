"""Embedding alignment losses between predicted embeddings and object embeddings (paper Sec. 3.4, Eq. 2).

- ``contrastive_alignment_loss``: MutDet's symmetric InfoNCE over matched pairs. With q = normalize(pred),
  k = normalize(target) (N pairs, N x N similarity matrix, T = 0.2):
      L = w * CE(q k^T / T, I) + w * CE(k q^T / T, I),   w = 2T = 0.4 (hard-coded in the release)
  The negatives of a pair are all the other pairs passed in: the released head concatenates the matched
  pairs of the whole per-GPU batch (within-image and cross-image negatives). With ``gather_distributed``
  the pairs of every DDP rank are gathered as extra negatives (not done by the release; off by default).
- ``embedding_regression_loss``: DETReg's object-embedding loss as MutDet's authors re-implemented it
  (MSE between L2-normalised embeddings, mean over pairs x dims, mmdet ``MSELoss`` 'mean'); ``'l1'`` is the
  original DETReg (``F.l1_loss(..., reduction='mean')`` on unnormalised embeddings; the targets here are
  the PCA embeddings, already unit length).
- ``matched_pairs``: gathers (prediction, target) rows from Hungarian / DN index pairs.

Both losses return an exact zero that is still connected to the graph when there is no pair (images
without pseudo-boxes), so every parameter keeps a (zero) gradient and DDP stays in step.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from .method_config import DN_ALIGNMENTS, EMBED_LOSSES  # noqa: F401  (torch-free home of the choices)


def matched_pairs(predictions: Tensor, targets: list[Tensor], indices: list[tuple[Tensor, Tensor]]
                  ) -> tuple[Tensor, Tensor]:
    """Rows of matched (prediction, target) pairs, concatenated over the batch in image order.

    Args:
        predictions: (B, N, E) predicted embeddings (queries, DN slots or encoder tokens).
        targets: B tensors (n_b, E) object embeddings.
        indices: B pairs (pred_idx (k_b,), target_idx (k_b,)).
    Returns:
        (K, E) predictions and (K, E) targets, K = sum k_b.
    """
    preds = [predictions[b, src] for b, (src, _) in enumerate(indices)]
    tgts = [targets[b][tgt] for b, (_, tgt) in enumerate(indices)]
    return torch.cat(preds), torch.cat(tgts).to(predictions.dtype)


def _connected_zero(*tensors: Tensor) -> Tensor:
    return sum(t.sum() for t in tensors) * 0.0


def _gather_rows(x: Tensor) -> tuple[Tensor, int]:
    """All ranks' rows (variable counts) concatenated in rank order, no gradient through other ranks'
    rows; also returns the offset of this rank's rows."""
    world, rank = dist.get_world_size(), dist.get_rank()
    count = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    padded = x.new_zeros(max(counts), x.shape[1])
    padded[: x.shape[0]] = x.detach()
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    parts = [p[:c] for p, c in zip(parts, counts)]
    parts[rank] = x  # keep the local rows in the graph
    return torch.cat(parts), sum(counts[:rank])


def contrastive_alignment_loss(pred: Tensor, target: Tensor, temperature: float = 0.2,
                               direction_weight: float | None = None, gather_distributed: bool = False) -> Tensor:
    """Symmetric InfoNCE (module docstring).

    Args:
        pred: (N, E) predicted embeddings of the matched predictions.
        target: (N, E) object embeddings of their ground truths (MutDet: enhanced, not detached).
        temperature: T (0.2).
        direction_weight: weight of each direction; None = 2T (released).
        gather_distributed: add the other DDP ranks' pairs as negatives (when torch.distributed is up).
    Returns:
        scalar loss, the mean over the local positives of each direction.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    weight = 2 * temperature if direction_weight is None else direction_weight
    use_dist = gather_distributed and dist.is_available() and dist.is_initialized()
    if pred.shape[0] == 0 and not use_dist:
        return _connected_zero(pred, target)
    q = F.normalize(pred.float(), dim=-1)
    k = F.normalize(target.float(), dim=-1)
    offset = 0
    q_all, k_all = q, k
    if use_dist:
        q_all, offset = _gather_rows(q)
        k_all, _ = _gather_rows(k)
    if q.shape[0] == 0:
        return _connected_zero(pred, target)
    labels = torch.arange(q.shape[0], device=q.device) + offset
    loss_q = F.cross_entropy(q @ k_all.T / temperature, labels)
    loss_k = F.cross_entropy(k @ q_all.T / temperature, labels)
    return weight * loss_q + weight * loss_k


def embedding_regression_loss(pred: Tensor, target: Tensor, kind: str = "mse") -> Tensor:
    """DETReg's object-embedding loss on matched pairs (module docstring): (N, E), (N, E) -> scalar."""
    if kind not in EMBED_LOSSES:
        raise ValueError(f"unknown embedding loss {kind!r}; expected one of {EMBED_LOSSES}")
    if pred.shape[0] == 0:
        return _connected_zero(pred, target)
    if kind == "mse":
        return F.mse_loss(F.normalize(pred.float(), dim=-1), F.normalize(target.float(), dim=-1))
    return F.l1_loss(pred.float(), target.float())


def dn_alignment_indices(dn_indices: list[tuple[Tensor, Tensor]], num_groups: int, mode: str = "first_group"
                         ) -> list[tuple[Tensor, Tensor]]:
    """Which positive DN slots take part in the alignment loss.

    ``dn_indices`` are the criterion's DN positives per image, group-major (slot g*2M + i <-> ground truth i
    for g = 0..G-1), ``num_groups`` is G (``dn_meta['num_groups']``). Modes:
    - ``first_group``: group 0 only, each ground truth once. Equal to the release whenever G = 1, which is
      the usual case with SAM's hundreds of boxes (G = max(1, 100 // max_gt)), and free of the release's
      duplicate positives when G > 1.
    - ``all_groups``: every positive slot (a ground truth appears G times, its copies are each other's
      negatives in InfoNCE).
    - ``released``: the released quirk: the batch's positives concatenated (image, group, gt) and cut to the
      first sum_b n_b; with G > 1 this repeats image 0's objects and drops later images'.
    - ``none``: no DN alignment (empty pairs).
    """
    if mode not in DN_ALIGNMENTS:
        raise ValueError(f"unknown dn_alignment {mode!r}; expected one of {DN_ALIGNMENTS}")
    if mode == "all_groups":
        return dn_indices
    if mode == "none":
        return [(src[:0], tgt[:0]) for src, tgt in dn_indices]
    counts = [len(tgt) // num_groups for _, tgt in dn_indices]  # n_b; group 0 holds ground truths 0..n_b-1
    if mode == "first_group":
        return [(src[:n], tgt[:n]) for (src, tgt), n in zip(dn_indices, counts)]
    remaining, out = sum(counts), []
    for src, tgt in dn_indices:
        take = min(remaining, len(src))
        out.append((src[:take], tgt[:take]))
        remaining -= take
    return out
