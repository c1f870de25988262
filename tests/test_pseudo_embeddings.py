"""Embedding stage: the batched rotated crop against a slow cv2 reference, the frozen ResNet, the store."""
from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import torch
import torchvision

from mutdet_core.pseudo_labels import (CheckpointError, EmbeddingParams, extract_embeddings, open_boxes,
                                       open_embeddings)
from mutdet_core.pseudo_labels.crops import rotated_crops
from mutdet_core.pseudo_labels.embeddings import build_embedder, normalise, prepare_tile
from mutdet_core.tiling.store import TileStore
from pseudo_label_fixtures import FAST_EMBEDDING, chain, tile_store_path  # noqa: F401  (fixtures)


def reference_crop(image: np.ndarray, rbox, size: int, enlarge: float) -> np.ndarray:
    """One crop with cv2.warpAffine: output pixel (j, i) samples the image at
    c + R(theta) diag(w', h')/2 ((2j+1)/S - 1, (2i+1)/S - 1), in continuous coordinates (pixel k covers
    [k, k+1), so cv2's pixel-centre coordinate is that minus 0.5)."""
    cx, cy, w, h, t = (float(v) for v in rbox)
    bw, bh = w * enlarge, h * enlarge
    c, s = np.cos(t), np.sin(t)
    # u = (2j+1)/S - 1 = a*j + b with a = 2/S, b = 1/S - 1
    a, b = 2.0 / size, 1.0 / size - 1.0
    m = np.array([
        [bw / 2 * c * a, -bh / 2 * s * a, cx + bw / 2 * c * b - bh / 2 * s * b - 0.5],
        [bw / 2 * s * a, bh / 2 * c * a, cy + bw / 2 * s * b + bh / 2 * c * b - 0.5],
    ])
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def test_batched_crops_match_per_crop_warp_affine(chain):
    """All boxes of a real tile (resized to 1024 px, ImageNet-normalised), 224 px crops with one sample per
    pixel and zeros outside (sampling_ratio 1, edge_rule zero; the release's 2 x 2 samples and edge rule are
    checked against mmcv in test_pseudo_crops.py): one affine_grid + grid_sample call vs one
    cv2.warpAffine per box. Both are bilinear at the same positions, so they differ
    only by float32 rounding of the sampling positions (affine_grid normalises them to [-1, 1] and
    grid_sample maps them back; ~1e-4 px at 1024 px) times the local image gradient. Measured on these
    tiles: mean |difference| per crop <= 1.5e-5, largest single value 3.3e-4, in normalised units where the
    image spans ~4. The tolerances are 10x that: a half-pixel shift or a swapped w/h would give ~0.1-1."""
    tiles, boxes = TileStore.open(chain["tiles"]), open_boxes(chain["boxes"])
    resized, scale = prepare_tile(tiles.read_pixels(0), 1024)
    image = normalise(resized, "cpu")
    rboxes = boxes.read("rbox", 0).astype(np.float64)
    rboxes[:, :4] *= scale
    rboxes[0, :2] = [3.0, 1020.0]  # one box half outside the image: zero padding must agree too
    crops = rotated_crops(image, torch.as_tensor(rboxes, dtype=torch.float32), 224, 1.5, 1, "zero").numpy()
    hwc = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    diffs = []
    for crop, rbox in zip(crops, rboxes):
        ref = reference_crop(hwc, rbox, 224, 1.5).transpose(2, 0, 1)
        diffs.append(np.abs(crop - ref).mean())
        assert np.abs(crop - ref).max() < 5e-3
    assert len(diffs) == len(rboxes) >= 50
    assert max(diffs) < 1.5e-4
    assert (crops[0] == 0).mean() > 0.2  # the box outside the image is partly zero (the mean colour)


def test_axis_aligned_crop_is_the_resized_region():
    """theta = 0, enlarge 1, one sample per pixel: the crop of a box equals cv2.resize of that region (same
    bilinear sampling)."""
    rng = np.random.default_rng(0)
    image = rng.random((3, 64, 80)).astype(np.float32)
    crop = rotated_crops(torch.from_numpy(image), torch.tensor([[40.0, 32.0, 32.0, 16.0, 0.0]]), 64, 1.0, 1)[0]
    region = image[:, 24:40, 24:56].transpose(1, 2, 0)
    expected = cv2.resize(region, (64, 64), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    inner = (slice(None), slice(2, -2), slice(2, -2))  # the border rows see outside the region in the crop
    assert np.abs(crop.numpy()[inner] - expected[inner]).max() < 1e-5
    # rotating the box by pi gives the same crop turned by 180 degrees
    flipped = rotated_crops(torch.from_numpy(image), torch.tensor([[40.0, 32.0, 32.0, 16.0, -np.pi]]), 64, 1.0,
                            1)[0]
    assert torch.allclose(flipped, crop.flip(1, 2), atol=1e-4)


def test_embedding_store_is_row_aligned_and_matches_a_direct_computation(chain):
    tiles, boxes, emb = TileStore.open(chain["tiles"]), open_boxes(chain["boxes"]), open_embeddings(chain["embeddings"])
    assert np.array_equal(emb.offsets, boxes.offsets) and emb.root["features"].shape == (boxes.num_rows, 512)
    assert emb.read("features", 2).shape == (0, 512)  # the blank tile
    assert emb.attrs["random_weights"] and emb.attrs["feature_dim"] == 512
    params = EmbeddingParams(**FAST_EMBEDDING)
    net = build_embedder(params, "cpu")
    resized, scale = prepare_tile(tiles.read_pixels(1), params.input_size)
    rbox = boxes.read("rbox", 1)[3:5].copy()
    rbox[:, :4] *= scale
    with torch.no_grad():
        crops = rotated_crops(normalise(resized, "cpu"), torch.as_tensor(rbox), params.crop_size, params.enlarge,
                              params.sampling_ratio, params.edge_rule)
        direct = net(crops).numpy()
    assert np.allclose(emb.read("features", 1)[3:5], direct, atol=1e-4)


def test_resnet50_layer4_embedding_from_a_weights_file(tile_store_path, chain, tmp_path):
    """Paper network: ResNet-50 from a local torchvision state dict, 224 px crops, 2048-d, frozen (eval)."""
    torch.manual_seed(1)
    reference = torchvision.models.resnet50(weights=None).eval()
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    params = EmbeddingParams(weights=str(path), batch_size=4)
    net = build_embedder(params, "cpu")
    assert not any(p.requires_grad for p in net.parameters()) and not net.train().training
    crops = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        trunk = torch.nn.Sequential(*list(reference.children())[:-2])
        assert torch.allclose(net(crops), trunk(crops).mean((2, 3)), atol=1e-5)
    # one tile's first boxes through the real stage code, row count and width
    boxes = open_boxes(chain["boxes"])
    from mutdet_core.pseudo_labels.embeddings import embed_tile

    features = embed_tile(net, TileStore.open(tile_store_path).read_pixels(0), boxes.read("rbox", 0)[:3], params, "cpu")
    assert features.shape == (3, 2048) and (features >= 0).all()  # average of ReLU outputs


def test_bad_weights_fail_before_any_output(chain, tmp_path):
    out = tmp_path / "e.zarr"
    with pytest.raises(CheckpointError, match="missing.pth does not exist"):
        extract_embeddings(chain["tiles"], chain["boxes"], out,
                           {**FAST_EMBEDDING, "weights": str(tmp_path / "missing.pth")})
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="bad.pth cannot be read"):
        extract_embeddings(chain["tiles"], chain["boxes"], out, {**FAST_EMBEDDING, "weights": str(bad)})
    wrong = tmp_path / "wrong.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), wrong)
    with pytest.raises(CheckpointError, match="wrong.pth does not fit the architecture"):
        build_embedder(EmbeddingParams(arch="resnet34", weights=str(wrong)))
    assert not out.exists()


def test_random_weights_are_announced(caplog):
    with caplog.at_level(logging.WARNING):
        build_embedder(EmbeddingParams(arch="resnet18"))
    assert "RANDOM weights" in caplog.text


def test_killed_embedding_job_leaves_no_store(chain, tmp_path, monkeypatch):
    from mutdet_core.pseudo_labels import embeddings as module

    real = module.embed_tile

    def dies_on_second_tile(embedder, prepared, rboxes, params, device):
        if dies_on_second_tile.calls == 1:
            raise RuntimeError("out of memory (simulated)")
        dies_on_second_tile.calls += 1
        return real(embedder, prepared, rboxes, params, device)

    dies_on_second_tile.calls = 0
    monkeypatch.setattr(module, "embed_tile", dies_on_second_tile)
    with pytest.raises(RuntimeError, match="simulated"):
        extract_embeddings(chain["tiles"], chain["boxes"], tmp_path / "e.zarr", FAST_EMBEDDING, device="cpu",
                           progress=False)
    assert not (tmp_path / "e.zarr").exists() and not (tmp_path / "e.zarr.tmp").exists()
