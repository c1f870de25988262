"""Masks stage (SPEC 2.2): class-agnostic object masks of every tile, cached in a Zarr store.

Two proposal methods share one store format:

* ``sam``: segment-anything's automatic mask generator (the paper; needs a checkpoint, see ``sam.py``);
* ``classical``: hierarchical Felzenszwalb segmentation (``graph_segmentation.py``; no checkpoint, CPU);
* ``regions``: compiled graph segmentation, merged neighbours, objectness ranking (``region_proposals.py``;
  no checkpoint, CPU; the default);
* ``selective_search``: OpenCV's selective search (``region_proposals.py``): boxes only, each stored as its
  filled box, so the boxes stage gives 0-angle oriented boxes.

Store ``mutdet-masks`` (see ``artifact.py`` for the common layout), one row per mask::

    bbox             (M, 4) int32   x, y, w, h of the mask's pixels in the tile
    area             (M,) int64     mask pixels
    predicted_iou    (M,) float32   SAM's IoU prediction (NaN for classical)
    stability_score  (M,) float32   SAM's stability score / the classical scale stability
    score            (M,) float32   the method's ranking score (SAM: predicted IoU; classical: objectness)
    point            (M, 2) float32 SAM's prompt point x, y (NaN for classical)
    bits_offset      (M,) int64     start of the mask in ``bits``
    bits             (B,) uint8     each mask cropped to its bbox, row-major, ``np.packbits`` (ceil(w*h/8) bytes)

Cropping to the bbox before bit-packing makes a 20x40 px vehicle mask 100 bytes instead of the 80 kB
of a full 800x800 bit plane.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..tiling.store import TileStore
from .artifact import StageWriter, existing_output, input_entry, open_stage, stage_fingerprint
from .graph_segmentation import propose_segments
from .params import MASK_METHOD_PARAMS
from .region_proposals import propose_regions, propose_selective_search
from .sam import CheckpointError, SamProposer, build_sam, resolve_device

log = logging.getLogger(__name__)

FORMAT = "mutdet-masks"
METHODS = ("classical", "regions", "selective_search", "sam")
# the per-tile function of each checkpoint-free method (graph_segmentation.py, region_proposals.py); the
# parameter class of every method is params.MASK_METHOD_PARAMS
CHECKPOINT_FREE = {"classical": propose_segments, "regions": propose_regions,
                   "selective_search": propose_selective_search}
ROW_ARRAYS = {
    "bbox": ((4,), "int32"), "area": ((), "int64"), "predicted_iou": ((), "float32"),
    "stability_score": ((), "float32"), "score": ((), "float32"), "point": ((2,), "float32"),
    "bits_offset": ((), "int64"),
}


def encode_masks(masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Bit-pack cropped bool masks: ``(bits (B,) uint8, sizes (M,) int64 bytes per mask)``."""
    if not masks:
        return np.zeros(0, np.uint8), np.zeros(0, np.int64)
    packed = [np.packbits(np.asarray(m, dtype=bool).ravel()) for m in masks]
    return np.concatenate(packed), np.array([len(p) for p in packed], dtype=np.int64)


def decode_mask(bits: np.ndarray, bbox) -> np.ndarray:
    """Inverse of ``encode_masks`` for one mask: ``(h, w)`` bool crop from its bytes and ``x, y, w, h``."""
    w, h = int(bbox[2]), int(bbox[3])
    return np.unpackbits(np.asarray(bits, dtype=np.uint8), count=w * h).reshape(h, w).astype(bool)


def paste_mask(crop: np.ndarray, bbox, size: tuple[int, int]) -> np.ndarray:
    """Full ``(H, W)`` bool mask from a crop and its ``x, y, w, h``."""
    full = np.zeros(size, dtype=bool)
    x, y, w, h = (int(v) for v in bbox)
    full[y:y + h, x:x + w] = crop
    return full


def read_tile_masks(store, i: int) -> dict:
    """Masks of tile ``i`` of a masks store: every row array of the tile plus ``masks`` (list of bool
    crops). Reads only the tile's bytes."""
    out = {name: store.read(name, i) for name in ROW_ARRAYS}
    if not len(out["area"]):
        out["masks"] = []
        return out
    sizes = (out["bbox"][:, 2].astype(np.int64) * out["bbox"][:, 3] + 7) // 8
    lo, hi = int(out["bits_offset"][0]), int(out["bits_offset"][-1] + sizes[-1])
    bits = np.asarray(store.root["bits"][lo:hi])
    starts = out["bits_offset"] - lo
    out["masks"] = [decode_mask(bits[s:s + n], b) for s, n, b in zip(starts, sizes, out["bbox"])]
    return out


def proposer_params(method: str, params=None):
    """Validated parameters of a proposal method and their description for the store's fingerprint.

    Args:
        method: one of ``METHODS``.
        params: ``GraphSegmentationParams`` / ``RegionProposalParams`` / ``SelectiveSearchParams`` /
            ``SamParams``, a dict of their fields, or None (defaults).
    Returns:
        ``(params_object, described_dict)``. A SAM checkpoint is identified by file name and byte size
        (its folder does not matter); a missing one raises ``CheckpointError`` here.
    """
    if method not in MASK_METHOD_PARAMS:
        raise ValueError(f"masks: unknown proposal method {method!r}; expected one of {METHODS}")
    cls = MASK_METHOD_PARAMS[method]
    p = params if isinstance(params, cls) else cls(**(params or {}))
    described = p.to_dict()
    if method == "sam" and p.checkpoint is not None:
        path = Path(p.checkpoint)
        if not path.is_file():
            raise CheckpointError(f"SAM {p.model_type} checkpoint {path} does not exist")
        described["checkpoint"] = f"{path.name}:{path.stat().st_size}"
    return p, {"method": method, **described}


def build_proposer(method: str, params, device="auto"):
    """The per-tile proposal function ``propose(image (H, W, 3) uint8 RGB) -> dict`` (keys as in
    ``SamProposer``). For SAM the checkpoint is loaded here, so a bad file fails before any tile."""
    params, _ = proposer_params(method, params)
    if method in CHECKPOINT_FREE:
        propose = CHECKPOINT_FREE[method]
        return lambda image: propose(image, params)
    return SamProposer(build_sam(params.model_type, params.checkpoint, device), params)


def _complete_fields(result: dict) -> dict:
    """Fill the fields a method does not produce with NaN, so every method writes the same rows."""
    m = len(result["area"])
    nan = np.full(m, np.nan, np.float32)
    return {
        "bbox": result["bbox"], "area": result["area"],
        "predicted_iou": result.get("predicted_iou", nan), "stability_score": result.get("stability_score", nan),
        "score": result.get("score", nan), "point": result.get("point", np.full((m, 2), np.nan, np.float32)),
    }


def generate_masks(tile_store, out_path, method: str = "regions", params=None, device="auto",
                   overwrite: bool = False, progress: bool | None = None) -> Path:
    """Masks stage entry point: propose masks for every tile of ``tile_store`` into ``out_path``.

    Args:
        tile_store: path of a finished tile store (or an open ``TileStore``).
        out_path: the ``.zarr`` store to write (written to ``<out>.tmp`` and renamed when complete).
        method: ``"regions"`` (default profile), ``"classical"``, ``"selective_search"`` or ``"sam"`` (paper).
        params: method parameters (dataclass or dict; see ``GraphSegmentationParams`` / ``SamParams``).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda:0"``... (SAM only).
        overwrite: rebuild a finished store built from other inputs/parameters instead of raising.
    Returns:
        ``out_path``. A finished store with the same fingerprint is left as it is.
    """
    tiles = tile_store if isinstance(tile_store, TileStore) else TileStore.open(tile_store)
    device = resolve_device(device)
    params, described = proposer_params(method, params)
    inputs = {"tiles": input_entry(tiles)}
    fingerprint = stage_fingerprint(FORMAT, described, {k: v["fingerprint"] for k, v in inputs.items()})
    if existing_output(out_path, fingerprint, FORMAT, overwrite) is not None:
        return Path(out_path)
    propose = build_proposer(method, params, device)  # reads the checkpoint: fails before any tile
    attrs = {"params": described, "inputs": inputs, "fingerprint": fingerprint,
             "tile_fingerprint": inputs["tiles"]["fingerprint"], "device": str(device)}
    log.info("masks (%s): %d tiles of %s -> %s", method, len(tiles), tiles.path, out_path)
    with StageWriter(out_path, FORMAT, tiles.index, ROW_ARRAYS, attrs, flat_arrays={"bits": "uint8"}) as writer:
        bits_total = 0
        for i in tqdm(range(len(tiles)), desc=f"masks ({method})", unit="tile",
                      disable=None if progress is None else not progress):
            start = time.perf_counter()
            result = propose(tiles.read_pixels(i))
            rows = _complete_fields(result)
            bits, sizes = encode_masks(result["masks"])
            rows["bits_offset"] = bits_total + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) \
                if len(sizes) else np.zeros(0, np.int64)
            bits_total += len(bits)
            writer.append_tile(i, rows, flat={"bits": bits}, seconds=round(time.perf_counter() - start, 3))
        path = writer.finish()
    return path


def open_masks(path):
    """Open a finished masks store (``StageError`` otherwise)."""
    return open_stage(path, FORMAT)
