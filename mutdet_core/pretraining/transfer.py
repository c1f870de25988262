"""Pre-training checkpoint -> fine-tuning detector (SPEC section 4 "Transfer to fine-tuning").

A pre-training model keeps its detector under ``detector.`` (``detector.encoder.layers.0...``); everything
else belongs to the method and is dropped: MutDet's ``mutual_enhancement.*``, ``embedding_head.*``,
``encoder_embedding_head.*``; DETReg's ``embedding_head.*``; UP-DETR's ``patch_projection.*``,
``feature_head.*``; AlignDet's ``projector.*`` and its EMA copies ``target_detector.*``,
``target_projector.*`` (the online network is what AlignDet transfers). Inside the detector the
classification branches ``heads.class_branches.*`` (256 pseudo-classes) and the DN label embedding
``denoising.label_embedding.weight`` (one row per class) start fresh; everything else is copied. The load
itself is ``mutdet_core.models.checkpoint.load_pretrained`` (non-strict, fresh prefixes).

Shapes: ``detector.query_embedding.weight`` may differ in its number of rows (e.g. 400 pre-training
queries, 900 fine-tuning ones): it is then kept fresh with a warning. Any other shape difference means a
checkpoint of another detector variant (width, backbone, angle coder...): a ``ValueError`` lists every
mismatched key with both shapes. A different decoder depth loads without shape errors but shifts the
per-stage heads (the pre-training encoder-stage branch, index L_pre, lands on decoder layer L_pre): the
release does the same with its E2D2 checkpoint; a warning says so.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.torch_version import TorchVersion

from ..models.checkpoint import FRESH_PREFIXES, load_pretrained

DETECTOR_PREFIX = "detector."
TOLERATED_SHAPE_MISMATCH = ("query_embedding.weight",)

log = logging.getLogger(__name__)


def read_checkpoint(path: str | Path) -> dict:
    """``torch.load`` with ``weights_only=True``, also allowing the ``TorchVersion`` the training engine stores
    in its checkpoints' ``meta`` (nothing else beyond plain containers and tensors is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pre-training checkpoint not found")
    try:
        with torch.serialization.safe_globals([TorchVersion]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated / foreign files
        raise ValueError(f"{path}: cannot read as a checkpoint with weights_only=True ({type(err).__name__}: "
                         f"{str(err).splitlines()[0]}); use an epoch_<E>.pth model checkpoint") from err


def _decoder_depth(keys) -> int:
    layers = {int(m.group(1)) for k in keys if (m := re.match(r"decoder\.layers\.(\d+)\.", k))}
    return max(layers) + 1 if layers else 0


def load_pretraining_checkpoint(detector: nn.Module, checkpoint: str | Path | dict[str, Tensor]
                                ) -> dict[str, list[str]]:
    """Load a pre-training checkpoint (file or state dict) into a fine-tuning ``ARSDETR``.

    Accepts the pre-training model's state dict (``detector.`` keys beside the method's modules), wrapped or
    not ('model' / 'state_dict', DDP ``module.``), or a plain detector state dict.

    Returns:
        {'loaded': detector keys copied, 'skipped': checkpoint keys not copied (method modules with their
        full names, fresh heads, tolerated shape mismatches), 'new': detector keys left at their
        initialisation}; each list sorted. Also logged.
    Raises:
        ValueError naming the source and listing the mismatched shapes for another detector variant.
    """
    source = "<state dict>" if isinstance(checkpoint, dict) else str(checkpoint)
    state = dict(checkpoint) if isinstance(checkpoint, dict) else read_checkpoint(checkpoint)
    for key in ("model", "state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
    if not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{source}: expected a state dict of tensors (or one under 'model' / 'state_dict')")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    if any(k.startswith(DETECTOR_PREFIX) for k in state):
        method_keys = sorted(k for k in state if not k.startswith(DETECTOR_PREFIX))
        detector_state = {k[len(DETECTOR_PREFIX):]: v for k, v in state.items() if k.startswith(DETECTOR_PREFIX)}
    else:  # a plain detector checkpoint (e.g. supervised pre-training)
        method_keys, detector_state = [], state

    own = detector.state_dict()
    mismatched = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in detector_state.items()
                  if k in own and own[k].shape != v.shape and not k.startswith(FRESH_PREFIXES)
                  and k not in TOLERATED_SHAPE_MISMATCH]
    if mismatched:
        raise ValueError(f"{source}: the checkpoint was made for another detector variant; "
                         f"{len(mismatched)} parameters differ in shape:\n  " + "\n  ".join(mismatched))
    depth_pre, depth_now = _decoder_depth(detector_state), _decoder_depth(own)
    if depth_pre and depth_now and depth_pre != depth_now:
        log.warning("%s: %d pre-training decoder layers vs %d now: per-stage heads shift (pre-training stage %d, "
                    "the encoder proposals, lands on decoder layer %d)", source, depth_pre, depth_now,
                    depth_pre, depth_pre)
    report = load_pretrained(detector, detector_state)
    loaded = sorted(report["loaded"])
    prefix = DETECTOR_PREFIX if detector_state is not state else ""
    skipped = sorted(method_keys + [prefix + k for k in report["fresh"] + report["unexpected"]]
                     + [prefix + k.split(":")[0] for k in report["shape_mismatch"]])
    new = sorted(set(own) - set(loaded))
    log.info("%s: loaded %d detector tensors; skipped %d checkpoint tensors (%s); %d detector tensors start "
             "fresh (%s)", source, len(loaded), len(skipped), _summary(skipped), len(new), _summary(new))
    if report["shape_mismatch"]:
        log.warning("%s: kept fresh because the shape differs: %s", source, report["shape_mismatch"])
    return {"loaded": loaded, "skipped": skipped, "new": new}


def _summary(keys: list[str]) -> str:
    """Top-level module names of ``keys`` with counts, e.g. 'heads.class_branches x6, mutual_enhancement x40'."""
    groups: dict[str, int] = {}
    for key in keys:
        parts = key.split(".")
        head = ".".join(parts[:3] if parts[0] == "detector" else parts[:2] if parts[0] == "heads" else parts[:1])
        groups[head] = groups.get(head, 0) + 1
    return ", ".join(f"{k} x{v}" for k, v in sorted(groups.items())) or "none"
