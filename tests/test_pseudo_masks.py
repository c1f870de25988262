"""Masks stage: mask codec, classical proposals (Felzenszwalb ladder), SAM generator and checkpoints."""
from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import minimum_spanning_tree

from mutdet_core.pseudo_labels import CheckpointError, StageError, generate_masks, open_masks, read_tile_masks
from mutdet_core.pseudo_labels.boxes import mask_to_rbox
from mutdet_core.pseudo_labels.graph_segmentation import (GraphSegmentationParams, felzenszwalb_ladder, grid_edges,
                                                          propose_segments)
from mutdet_core.pseudo_labels.masks import decode_mask, encode_masks, paste_mask
from mutdet_core.pseudo_labels.quality import iou_matrix
from mutdet_core.pseudo_labels.sam import SamParams, build_sam, build_tiny_sam
from mutdet_core.tiling.store import TileStore
from pseudo_label_fixtures import FAST_CLASSICAL, chain, tile_store_path  # noqa: F401  (fixtures)

TINY_SAM = {"model_type": "tiny", "points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


def test_mask_codec_round_trip_on_odd_sizes():
    rng = np.random.default_rng(0)
    masks = [rng.random((h, w)) > 0.5 for h, w in [(1, 1), (3, 5), (17, 9), (40, 41)]]
    bits, sizes = encode_masks(masks)
    assert sizes.tolist() == [1, 2, 20, 205]  # ceil(h*w/8)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for m, s, n in zip(masks, starts, sizes):
        assert np.array_equal(decode_mask(bits[s:s + n], (0, 0, m.shape[1], m.shape[0])), m)
    full = paste_mask(masks[1], (10, 20, 5, 3), (32, 32))
    assert full.sum() == masks[1].sum() and np.array_equal(full[20:23, 10:15], masks[1])


def _tile(tile_store_path, i):
    store = TileStore.open(tile_store_path)
    return store.read_pixels(i), store.read_objects(i)


def test_felzenszwalb_first_scale_is_not_too_fine(tile_store_path):
    """Felzenszwalb & Huttenlocher's guarantee: between any two adjacent segments the cheapest edge is
    heavier than min(Int(C) + k/|C|) of the two, Int(C) being the heaviest edge of C's minimum spanning tree.
    Checked independently (scipy MST per segment) on a real 64x64 patch of cars."""
    pixels, _ = _tile(tile_store_path, 0)
    patch = np.ascontiguousarray(pixels[330:394, 270:334])
    k = 64.0
    labels = felzenszwalb_ladder(patch, k, 2, sigma=0.8, min_size=1)[0]["labels"].ravel()
    smooth = cv2.GaussianBlur(patch.astype(np.float32), (0, 0), 0.8).reshape(-1, 3)
    a, b = grid_edges(64, 64)
    w = np.sqrt(((smooth[a] - smooth[b]) ** 2).sum(1))
    inside = labels[a] == labels[b]
    mst = minimum_spanning_tree(coo_matrix((w[inside] + 1e-9, (a[inside], b[inside])), shape=(4096, 4096))).tocoo()
    internal = np.zeros(4096)
    np.maximum.at(internal, labels[mst.row], mst.data - 1e-9)
    size = np.bincount(labels, minlength=4096)
    between = ~inside
    la, lb, wb = labels[a[between]], labels[b[between]], w[between]
    threshold = np.minimum(internal[la] + k / size[la], internal[lb] + k / size[lb])
    assert len(np.unique(labels)) > 5
    assert (wb > threshold - 1e-4).all()


def test_felzenszwalb_scales_nest(tile_store_path):
    pixels, _ = _tile(tile_store_path, 0)
    ladder = felzenszwalb_ladder(np.ascontiguousarray(pixels[:200, 200:400]), 32, 4)
    counts = [len(np.unique(level["labels"])) for level in ladder]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]
    for fine, coarse in zip(ladder[:-1], ladder[1:]):
        pairs = np.unique(np.stack([fine["labels"].ravel(), coarse["labels"].ravel()], 1), axis=0)
        assert len(pairs) == len(np.unique(fine["labels"]))  # every fine segment lies in one coarse segment


def test_classical_proposals_find_the_buses(tile_store_path):
    """Default parameters on the real car-park tile: most of its large vehicles get a box at IoU 0.5."""
    pixels, objects = _tile(tile_store_path, 0)
    out = propose_segments(pixels, GraphSegmentationParams())
    assert 50 <= len(out["masks"]) <= 500
    assert np.all(np.diff(out["score"]) <= 0)  # best first
    polygons = np.array([mask_to_rbox(m, b)[1] for m, b in zip(out["masks"], out["bbox"])
                         if mask_to_rbox(m, b)[1] is not None])
    iou = iou_matrix(objects["polygons"], polygons)
    large = objects["class_id"] == TileStore.open(tile_store_path).classes.index("large-vehicle")
    assert large.sum() == 50
    assert (iou[large].max(axis=1) >= 0.5).mean() >= 0.5
    for m, (x, y, w, h), area in zip(out["masks"], out["bbox"], out["area"]):
        assert m.shape == (h, w) and m.sum() == area and m[0].any() and m[:, 0].any()


def test_uniform_tile_gives_no_mask():
    out = propose_segments(np.full((200, 200, 3), 120, np.uint8), GraphSegmentationParams())
    assert len(out["masks"]) == 0 and out["bbox"].shape == (0, 4)


def test_classical_masks_stage_writes_every_field(chain):
    store = open_masks(chain["masks"])
    assert len(store) == 3 and store.offsets[-1] - store.offsets[-2] == 0  # the blank tile has no mask
    m = read_tile_masks(store, 0)
    assert len(m["masks"]) == FAST_CLASSICAL["max_masks"]
    assert np.isnan(m["predicted_iou"]).all() and np.isnan(m["point"]).all()
    assert (m["stability_score"] >= 0.5).all() and np.array_equal([x.sum() for x in m["masks"]], m["area"])
    assert read_tile_masks(store, 2)["masks"] == []
    assert store.attrs["params"]["method"] == "classical" and store.attrs["complete"]


@pytest.fixture(scope="module")
def tiny_sam_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam") / "tiny_sam.pth"
    torch.save(build_tiny_sam().state_dict(), path)
    return path


def test_tiny_sam_runs_the_real_generator_on_a_real_tile(tile_store_path, tiny_sam_checkpoint, tmp_path):
    params = {**TINY_SAM, "checkpoint": str(tiny_sam_checkpoint)}
    path = generate_masks(tile_store_path, tmp_path / "sam.zarr", "sam", params, device="cpu", progress=False)
    store = open_masks(path)
    m = read_tile_masks(store, 0)
    assert len(m["masks"]) >= 1
    for crop, (x, y, w, h), area, point in zip(m["masks"], m["bbox"], m["area"], m["point"]):
        assert crop.shape == (h, w) and crop.sum() == area > 0
        assert 0 <= point[0] < 800 and 0 <= point[1] < 800  # prompt points are on the tile
    assert np.isfinite(m["predicted_iou"]).all() and np.array_equal(m["score"], m["predicted_iou"])
    assert store.attrs["params"]["checkpoint"].startswith("tiny_sam.pth:")
    assert store.attrs["params"]["points_per_side"] == 4


def test_sam_defaults_are_the_released_ones():
    p = SamParams()
    assert (p.model_type, p.points_per_side, p.pred_iou_thresh, p.stability_score_thresh, p.box_nms_thresh,
            p.crop_n_layers) == ("vit_h", 32, 0.88, 0.95, 0.7, 0)


def test_missing_checkpoint_fails_before_any_tile(tile_store_path, tmp_path):
    out = tmp_path / "sam.zarr"
    with pytest.raises(CheckpointError, match="nowhere.pth does not exist"):
        generate_masks(tile_store_path, out, "sam", {**TINY_SAM, "checkpoint": str(tmp_path / "nowhere.pth")})
    with pytest.raises(CheckpointError, match="needs its checkpoint"):
        generate_masks(tile_store_path, out, "sam", {"model_type": "vit_b"})
    assert not out.exists() and not (tmp_path / "sam.zarr.tmp").exists()


def test_corrupt_and_mismatched_checkpoints_name_the_file(tile_store_path, tiny_sam_checkpoint, tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(tiny_sam_checkpoint.read_bytes()[:5000])  # a truncated download
    with pytest.raises(CheckpointError, match=r"corrupt\.pth cannot be read"):
        generate_masks(tile_store_path, tmp_path / "a.zarr", "sam", {**TINY_SAM, "checkpoint": str(corrupt)})
    other = tmp_path / "resnet.pth"
    torch.save(torch.nn.Linear(3, 2).state_dict(), other)
    with pytest.raises(CheckpointError, match=r"resnet\.pth does not fit the architecture: missing"):
        build_sam("tiny", other, "cpu")
    assert not (tmp_path / "a.zarr").exists()


def test_random_tiny_sam_says_so(caplog):
    with caplog.at_level(logging.WARNING):
        build_sam("tiny", None, "cpu")
    assert "RANDOM weights" in caplog.text


def test_rerun_with_other_parameters_is_detected(chain):
    tile_store_path, out = chain["tiles"], chain["masks"]
    stamp = (out / "zarr.json").stat().st_mtime_ns
    assert generate_masks(tile_store_path, out, "classical", FAST_CLASSICAL) == out  # up to date: no work
    assert (out / "zarr.json").stat().st_mtime_ns == stamp
    with pytest.raises(StageError, match="built from other inputs or parameters"):
        generate_masks(tile_store_path, out, "classical", {**FAST_CLASSICAL, "max_masks": 10})
