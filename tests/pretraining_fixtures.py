"""Shared inputs of the pre-training tests: a tiny detector config and synthetic pseudo-labelled images.

The synthetic images carry filled rotated rectangles on a grey background; each rectangle's colour is its
pseudo-class (its "k-means cluster"), and its embedding is the cluster prototype plus noise, L2-normalised,
so boxes, classes and embeddings are as consistent as the real SAM / PCA / k-means pseudo-labels.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from mutdet_core.geometry import obb2poly

TINY_DETECTOR = dict(backbone={"name": "tiny", "width": 8}, d_model=32, n_heads=4, ffn_dim=64,
                     num_encoder_layers=1, num_decoder_layers=2, num_queries=12, num_dn_queries=8)
COLOURS = ((230, 60, 40), (40, 200, 230), (240, 230, 60), (60, 220, 90))


def make_batch(counts=(3, 2), size=(64, 64), embedding_dim=32, seed=0, noise=0.1):
    """images (B, 3, H, W) normalised, padding mask (B, H, W) (all False), targets (B dicts with labels,
    boxes, angles, embeddings). ``counts`` gives the number of objects per image (0 allowed)."""
    rng = np.random.default_rng(seed)
    height, width = size
    prototypes = F.normalize(torch.as_tensor(rng.standard_normal((len(COLOURS), embedding_dim)), dtype=torch.float32),
                             dim=-1)
    images, targets = [], []
    for count in counts:
        image = np.full((height, width, 3), 110, np.uint8)
        boxes, angles, labels = [], [], []
        for _ in range(count):
            w, h = rng.uniform(14, 24), rng.uniform(6, 10)
            cx, cy = rng.uniform(14, width - 14), rng.uniform(14, height - 14)
            theta = rng.uniform(-math.pi / 2, math.pi / 2)
            label = int(rng.integers(0, len(COLOURS)))
            corners = np.asarray(obb2poly(np.array([cx, cy, w, h, theta]))).reshape(4, 2)
            cv2.fillPoly(image, [np.round(corners).astype(np.int32)], COLOURS[label])
            boxes.append([cx / width, cy / height, w / width, h / height])
            angles.append(theta)
            labels.append(label)
        labels_t = torch.as_tensor(labels, dtype=torch.int64)
        embeddings = prototypes[labels_t] + noise * torch.as_tensor(rng.standard_normal((count, embedding_dim)),
                                                                    dtype=torch.float32)
        targets.append({"labels": labels_t, "boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                        "angles": torch.as_tensor(angles, dtype=torch.float32),
                        "embeddings": F.normalize(embeddings, dim=-1).reshape(count, embedding_dim)})
        images.append(torch.as_tensor(image, dtype=torch.float32).permute(2, 0, 1))
    images = (torch.stack(images) - 120.0) / 60.0
    return images, torch.zeros(len(counts), height, width, dtype=torch.bool), targets


def total_loss(losses: dict, weight_dict: dict) -> torch.Tensor:
    return sum(weight_dict[k] * v for k, v in losses.items() if k in weight_dict)


def train_steps(model, criterion, batch, steps: int, lr: float = 1e-3, total_iterations: int | None = None
                ) -> list[dict]:
    """AdamW on one fixed batch, ``model.on_iteration(step, total_iterations or steps)`` after every step
    as the engine calls it; per step the float losses plus 'total' (weighted)."""
    images, mask, targets = batch
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-5)
    model.train()
    history = []
    for step in range(steps):
        losses = criterion(model(images, mask, targets), targets)
        total = total_loss(losses, criterion.weight_dict)
        optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 35.0)
        optimizer.step()
        model.on_iteration(step + 1, total_iterations or steps)
        history.append({"total": float(total.detach()), **{k: float(v.detach()) for k, v in losses.items()}})
    return history
