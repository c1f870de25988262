"""Pre-training targets (SPEC 2.5-2.7): one dict per image.

    labels      (n,) int64 pseudo-class (k-means cluster) in [0, num_classes), 256 in the paper
    boxes       (n, 4) float normalised (cx, cy, w, h) of the padded input
    angles      (n,) float radians, le90
    embeddings  (n, E) float PCA-256 object embeddings, L2-normalised (E = 256)

``object_embeddings`` checks them before any expensive work and returns the embeddings list.
"""
from __future__ import annotations

from torch import Tensor


def object_embeddings(targets: list[dict] | None, dim: int) -> list[Tensor]:
    """The B ``embeddings`` tensors (n_b, dim) of ``targets``, checked against the boxes.

    Raises:
        ValueError / KeyError naming the image index and the problem.
    """
    if targets is None:
        raise ValueError("pre-training needs targets with 'embeddings' (n, E) per image, got None")
    out = []
    for i, t in enumerate(targets):
        if "embeddings" not in t:
            raise KeyError(f"pre-training target {i} has no 'embeddings' (keys: {sorted(t)}); the pseudo-label "
                           f"stage writes (n, {dim}) PCA embeddings per object")
        emb = t["embeddings"]
        n = len(t["boxes"])
        if emb.dim() != 2 or emb.shape != (n, dim):
            raise ValueError(f"pre-training target {i}: 'embeddings' must be ({n}, {dim}) (one per box), "
                             f"got {tuple(emb.shape)}")
        out.append(emb)
    return out
