"""Loading a pre-trained detector checkpoint for fine-tuning (SPEC section 4, "Transfer to fine-tuning").

The parameter names of ``ARSDETR`` are the contract (docs/checkpoints.md). Fine-tuning loads a
pre-training checkpoint *non-strictly*:

- keys under ``FRESH_PREFIXES`` are not loaded: the classification branches (pre-training classifies 256
  pseudo-classes) and the DN label embedding (one row per class) start fresh;
- keys the fine-tuning model does not have (MutDet's enhancement module and projection heads, DETReg's
  embedding head, ...) are dropped;
- keys whose shape differs (e.g. ``query_embedding`` with another ``num_queries``) keep their fresh value
  and are reported, as mmcv's non-strict ``load_checkpoint`` does;
- everything else (backbone, neck, encoder, two-stage, decoder, box and angle branches, query embedding)
  is copied.
"""
from __future__ import annotations

import logging
from pathlib import Path

from torch import Tensor, nn

from .backbone import load_state_dict_file

FRESH_PREFIXES = ("heads.class_branches.", "denoising.label_embedding.")

log = logging.getLogger(__name__)


def load_pretrained(model: nn.Module, checkpoint: str | Path | dict[str, Tensor],
                    fresh_prefixes: tuple[str, ...] = FRESH_PREFIXES) -> dict[str, list[str]]:
    """Copy the matching parameters of ``checkpoint`` (a file or a state dict) into ``model``.

    Returns:
        report dict of key lists: 'loaded', 'fresh' (skipped on purpose), 'shape_mismatch', 'unexpected'
        (in the checkpoint only), 'missing' (in the model only, not fresh: they keep their init).
    Raises:
        ValueError naming the file when nothing at all matches (almost surely the wrong file).
    """
    source = str(checkpoint) if not isinstance(checkpoint, dict) else "<state dict>"
    state = load_state_dict_file(checkpoint) if not isinstance(checkpoint, dict) else checkpoint
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}  # DDP wrapper
    own = model.state_dict()
    report = {"loaded": [], "fresh": [], "shape_mismatch": [], "unexpected": [], "missing": []}
    to_load = {}
    for key, value in state.items():
        if key.startswith(fresh_prefixes):
            report["fresh"].append(key)
        elif key not in own:
            report["unexpected"].append(key)
        elif own[key].shape != value.shape:
            report["shape_mismatch"].append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}")
        else:
            to_load[key] = value
            report["loaded"].append(key)
    report["missing"] = sorted(k for k in own if k not in to_load and not k.startswith(fresh_prefixes))
    if not to_load:
        raise ValueError(f"{source}: no parameter matches the model (first checkpoint keys: {list(state)[:3]})")
    model.load_state_dict(to_load, strict=False)
    if report["shape_mismatch"]:
        log.warning("%s: %d parameters kept fresh because of a shape mismatch, e.g. %s", source,
                    len(report["shape_mismatch"]), report["shape_mismatch"][:2])
    return report
