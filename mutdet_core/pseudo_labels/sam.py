"""SAM automatic mask generation (SPEC 2.2): model building, checkpoint loading, the per-tile proposer.

MutDet ran ``SamAutomaticMaskGenerator(sam_vit_h)`` with all defaults on RGB 800 px tiles: 32 points per
side, predicted-IoU threshold 0.88, stability threshold 0.95, box NMS 0.7 (the paper says 0.8), no crop
layers. ``SamParams`` holds these defaults.

The checkpoint is loaded here, not by ``segment_anything.build_sam`` (which calls ``torch.load`` on the
path without ``weights_only`` and fails with a bare pickle error): a missing, truncated or mismatched file
is reported with its path before the first tile is read.
"""
from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np
import torch

from .params import SAM_MODEL_TYPES, CheckpointError, SamParams  # noqa: F401  (torch-free home, re-exported)

log = logging.getLogger(__name__)

def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_state_dict(path, what: str) -> dict:
    """``torch.load(path, weights_only=True)`` with errors that name the file (and unwrap ``state_dict``
    / ``model`` wrappers some checkpoints use)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle, zip and torch errors all mean "not a usable checkpoint"
        raise CheckpointError(f"{what} checkpoint {path} cannot be read ({type(err).__name__}: {err}); "
                              f"the file is corrupt, truncated or not a PyTorch state dict") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{what} checkpoint {path} does not hold a state dict of tensors")
    return state


def load_into(model: torch.nn.Module, state: dict, path, what: str) -> None:
    """``model.load_state_dict(state)`` strictly, with an error naming the file and the first mismatches."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        missing = sorted(set(model.state_dict()) - set(state))
        unexpected = sorted(set(state) - set(model.state_dict()))
        detail = f"missing {missing[:3]}, unexpected {unexpected[:3]}" if missing or unexpected else str(err)[:300]
        raise CheckpointError(f"{what} checkpoint {path} does not fit the architecture: {detail}") from None


def build_tiny_sam():
    """A randomly initialised 0.2 M-parameter SAM (image size 256, patch 16) for CPU tests
    (reference file ``baselines_and_sam.md`` 4.4). Random weights give no mask at the default thresholds."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    img, patch, dim = 256, 16, 32
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=img, patch_size=patch, embed_dim=64, depth=2, num_heads=2, mlp_ratio=4, out_chans=dim,
            qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True, window_size=4,
            global_attn_indexes=[1]),
        prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(img // patch, img // patch),
                                     input_image_size=(img, img), mask_in_chans=4),
        mask_decoder=MaskDecoder(num_multimask_outputs=3,
                                 transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
                                 transformer_dim=dim, iou_head_depth=3, iou_head_hidden_dim=32),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
    ).eval()


def build_sam(model_type: str, checkpoint=None, device="auto"):
    """SAM of ``model_type`` with weights from ``checkpoint``, in eval mode on ``device``.

    The checkpoint is read before the (large) model is built, so a bad file fails in seconds.
    Raises ``CheckpointError`` for a missing / corrupt / mismatched file, or no file for a real model.
    """
    if model_type not in SAM_MODEL_TYPES:
        raise ValueError(f"SAM model_type {model_type!r} is not one of {SAM_MODEL_TYPES}")
    if checkpoint is None and model_type != "tiny":
        raise CheckpointError(
            f"SAM {model_type} needs its checkpoint (e.g. sam_vit_h_4b8939.pth from "
            f"https://dl.fbaipublicfiles.com/segment_anything/); set pseudo_labels.masks.sam.checkpoint, "
            f"or use the classical proposal method, which needs none")
    state = load_state_dict(checkpoint, f"SAM {model_type}") if checkpoint is not None else None
    if model_type == "tiny":
        model = build_tiny_sam()
    else:
        from segment_anything import sam_model_registry

        model = sam_model_registry[model_type](checkpoint=None)
    if state is not None:
        load_into(model, state, checkpoint, f"SAM {model_type}")
    else:
        log.warning("SAM %s has RANDOM weights (no checkpoint): only for tests, its masks mean nothing", model_type)
    return model.eval().to(resolve_device(device))


class SamProposer:
    """Calls ``SamAutomaticMaskGenerator`` on a tile and returns its masks cropped to their extent.

    ``__call__(image (H, W, 3) uint8 RGB)`` -> dict with ``bbox`` (M, 4) int32 ``x, y, w, h`` of the mask
    pixels, ``masks`` list of M bool crops, ``area`` (M,) int64, ``predicted_iou``, ``stability_score``,
    ``score`` (= predicted IoU) (M,) float32 and ``point`` (M, 2) float32 prompt point ``x, y``, in the
    generator's order (predicted IoU, descending).
    """

    def __init__(self, model, params: SamParams):
        from segment_anything import SamAutomaticMaskGenerator

        self.params = params
        self.generator = SamAutomaticMaskGenerator(model, output_mode="binary_mask", **params.generator_kwargs())

    def __call__(self, image: np.ndarray) -> dict:
        records = self.generator.generate(np.ascontiguousarray(image))
        bbox, masks, area, iou, stability, point = [], [], [], [], [], []
        for record in records:
            mask = np.asarray(record["segmentation"], dtype=bool)
            rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
            if not len(rows):  # SAM can keep an empty mask when the stability filter is off
                continue
            y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
            bbox.append((x0, y0, x1 - x0, y1 - y0))
            masks.append(mask[y0:y1, x0:x1])
            area.append(int(mask.sum()))
            iou.append(float(record["predicted_iou"]))
            stability.append(float(record["stability_score"]))
            point.append(np.asarray(record["point_coords"], dtype=np.float32).reshape(-1)[:2])
        return {
            "bbox": np.asarray(bbox, np.int32).reshape(-1, 4), "masks": masks, "area": np.asarray(area, np.int64),
            "predicted_iou": np.asarray(iou, np.float32), "stability_score": np.asarray(stability, np.float32),
            "score": np.asarray(iou, np.float32), "point": np.asarray(point, np.float32).reshape(-1, 2),
        }
