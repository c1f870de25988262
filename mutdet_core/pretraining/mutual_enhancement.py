"""Mutual enhancement module of MutDet (paper Sec. 3.3, Eq. 1; released ``TwoWayTransformer``).

Object embeddings (the 256-d PCA pseudo-label embeddings of one image) and image tokens (all multi-scale
encoder tokens of that image) enhance each other in ``num_layers`` (3) enhancement layers. Each layer,
post-norm, no dropout, no positional encoding anywhere:

    obj = norm1(obj + SelfAttn(obj, obj, obj))                  object self-attention
    obj = norm2(obj + CrossAttn(q=obj, k=img, v=img))           objects attend to all image tokens
    obj = norm3(obj + MLP(obj))                                 MLP D -> 2048 -> D, ReLU
    img = norm4(img + CrossAttn(q=img, k=obj, v=obj))           image tokens attend to the objects

There is no MLP on the image tokens and no final attention or norm after the last layer (SAM's
``final_attn_token_to_image`` was removed in the release). Attention is plain multi-head scaled
dot-product attention with separate q / k / v / out projections (SAM's ``Attention``), written out here
rather than with ``nn.MultiheadAttention`` so that an image without objects needs no special case: the
softmax over zero keys yields a (S, 0) weight matrix and an all-zero update.

Before the layers, image tokens pass ``image_projection`` Linear(D, D) + ``image_norm`` LayerNorm (released
``patch_enc_output`` / ``patch_enc_output_norm``); tokens that are padding or whose grid proposal is out of
range are zero-filled before the Linear, as released. Object tokens enter as they are (no projection) when
their width equals D; a ``object_projection`` Linear(E, D) is added only when E != D (tests with a small
d_model; it does not exist in the paper's configuration where E = D = 256).

The module runs per image (the object counts differ). Padding tokens are left out of the attention
entirely (the released code lets them take part as keys after zero-filling; leaving them out makes an
image's result independent of how much the batch pads it); they come out as their projected input.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head scaled dot-product attention with q / k / v / out Linear(D, D) (no dropout, no mask).

    Shapes: q (N, D), k (M, D), v (M, D) -> (N, D); M may be 0 (the output is then the out-projection bias).
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _split(self, x: Tensor) -> Tensor:  # (N, D) -> (heads, N, D / heads)
        return x.view(x.shape[0], self.num_heads, x.shape[1] // self.num_heads).transpose(0, 1)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q, k, v = self._split(self.q_proj(q)), self._split(self.k_proj(k)), self._split(self.v_proj(v))
        weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
        out = (weights @ v).transpose(0, 1).reshape(q.shape[1], q.shape[0] * q.shape[2])
        return self.out_proj(out)


class EnhancementLayer(nn.Module):
    """One mutual enhancement layer (module docstring). Parameters: ``self_attn``, ``cross_attn_object_to_image``,
    ``mlp.{0,2}`` (Linear D->M, ReLU, Linear M->D), ``cross_attn_image_to_object``, ``norm1``..``norm4``."""

    def __init__(self, dim: int = 256, num_heads: int = 8, mlp_dim: int = 2048):
        super().__init__()
        self.self_attn = Attention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_object_to_image = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.ReLU(), nn.Linear(mlp_dim, dim))
        self.norm3 = nn.LayerNorm(dim)
        self.cross_attn_image_to_object = Attention(dim, num_heads)
        self.norm4 = nn.LayerNorm(dim)

    def forward(self, objects: Tensor, image: Tensor) -> tuple[Tensor, Tensor]:
        """objects (N, D), image (M, D) -> enhanced (objects, image), same shapes."""
        objects = self.norm1(objects + self.self_attn(objects, objects, objects))
        objects = self.norm2(objects + self.cross_attn_object_to_image(objects, image, image))
        objects = self.norm3(objects + self.mlp(objects))
        image = self.norm4(image + self.cross_attn_image_to_object(image, objects, objects))
        return objects, image


class MutualEnhancement(nn.Module):
    """Enhances encoder tokens and object embeddings with each other (module docstring).

    Args:
        dim: D, the detector width (256).
        object_dim: E, width of the object embeddings (256 = PCA dimension).
        num_layers: enhancement layers (3, released config; the class default there is 2).
        num_heads: 8.
        mlp_dim: hidden width of the object MLP (2048, hard-coded in the release).
    """

    def __init__(self, dim: int = 256, object_dim: int = 256, num_layers: int = 3, num_heads: int = 8,
                 mlp_dim: int = 2048):
        super().__init__()
        self.dim = dim
        self.object_dim = object_dim
        self.image_projection = nn.Linear(dim, dim)
        self.image_norm = nn.LayerNorm(dim)
        self.object_projection = nn.Linear(object_dim, dim) if object_dim != dim else None
        self.layers = nn.ModuleList(EnhancementLayer(dim, num_heads, mlp_dim) for _ in range(num_layers))
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # The released transformer init applies Xavier-uniform to every >1-d parameter, this module included.
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, memory: Tensor, object_embeddings: list[Tensor], padding_mask: Tensor | None = None,
                valid_tokens: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        """
        Args:
            memory: (B, S, D) encoder output tokens.
            object_embeddings: B tensors (n_b, E) (n_b may be 0), the pseudo-label embeddings.
            padding_mask: (B, S) bool, True on padding tokens (left out of the attention).
            valid_tokens: (B, S) bool, False where the token is padding or its grid proposal is out of range
                (zero-filled before the image projection, as released); default ``~padding_mask``.
        Returns:
            enhanced memory F_enh (B, S, D) and the enhanced object embeddings O_enh, B tensors (n_b, D).
        """
        batch, tokens, dim = memory.shape
        if dim != self.dim:
            raise ValueError(f"memory width {dim} != enhancement module width {self.dim}")
        if len(object_embeddings) != batch:
            raise ValueError(f"got {len(object_embeddings)} object-embedding tensors for a batch of {batch}")
        if padding_mask is None:
            padding_mask = torch.zeros(batch, tokens, dtype=torch.bool, device=memory.device)
        if valid_tokens is None:
            valid_tokens = ~padding_mask
        image = self.image_norm(self.image_projection(memory.masked_fill(~valid_tokens[..., None], 0.0)))
        enhanced_memory, enhanced_objects = [], []
        for b in range(batch):
            objects = object_embeddings[b]
            if objects.dim() != 2 or objects.shape[1] != self.object_dim:
                raise ValueError(f"image {b}: object embeddings must be (n, {self.object_dim}), "
                                 f"got {tuple(objects.shape)}")
            objects = objects.to(image.dtype)
            if self.object_projection is not None:
                objects = self.object_projection(objects)
            keep = ~padding_mask[b]
            tokens_b = image[b][keep]
            for layer in self.layers:
                objects, tokens_b = layer(objects, tokens_b)
            # Scatter the updated tokens back; padding tokens keep their projected input.
            enhanced_memory.append(image[b].masked_scatter(keep[:, None], tokens_b))
            enhanced_objects.append(objects)
        return torch.stack(enhanced_memory), enhanced_objects


def build_mutual_enhancement(dim: int, object_dim: int, cfg: dict) -> MutualEnhancement:
    """From the method config keys ``enhancement_layers`` (3), ``enhancement_heads`` (8), ``enhancement_mlp_dim``
    (2048)."""
    return MutualEnhancement(dim, object_dim, int(cfg.get("enhancement_layers", 3)),
                             int(cfg.get("enhancement_heads", 8)), int(cfg.get("enhancement_mlp_dim", 2048)))
