"""Rule ``predict``: a fine-tuned checkpoint on every tile of a tile store, merged to full images (SPEC 5).

``predict_run`` runs the detector in eval mode on batches of tiles resized exactly like fine-tuning,
maps the top-``num_select`` (query, class) pairs back to tile pixels (``PostProcess`` with the resize
factors), writes tile-level ``Task1_<class>.txt`` files (tile names as image ids), then merges them with
``evaluation.merge_task1_folder`` (score filter, per-tile NMS 0.5, tile offsets, class-wise NMS 0.1).
Output folder (written as ``<out_dir>.tmp`` and swapped in when complete by ``mutdet_core.swap``, the
old folder kept as ``<out_dir>.old`` until the new one is in)::

    out_dir/
        tiles/Task1_<class>.txt    tile detections with score >= score_thr (tile coordinates)
        merged/Task1_<class>.txt   full-image detections, one file per class (empty ones included)
        merged.zip                 the merged files at the archive root, for the DOTA evaluation server
        predict.json               checkpoint, store, counts, seconds, merge settings
"""
from __future__ import annotations

import logging
import shutil
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..data import build_detection_dataset, collate_detection
from ..datasets.dota import write_task1_folder
from ..engine import load_checkpoint
from ..evaluation.merge import MergeParams, merge_task1_folder
from ..models.detector import build_detector
from ..swap import recover_swap, swap_in
from ..tiling.store import TileStore
from .finetune import check_same_variant
from .record import file_digest, read_json, write_json
from .settings import DataConfig, resolve_device, with_num_classes

log = logging.getLogger("mutdet.runs.predict")

SUMMARY = "predict.json"


def load_finetuned(checkpoint, detector_cfg: dict | None, classes: list[str]):
    """``(model, postprocessor, detector config, classes)`` from a fine-tuning checkpoint.

    The detector config defaults to the one recorded in the checkpoint; a given one must be of the same
    variant. The classes recorded in the checkpoint must be those of the store predicted on.
    """
    state = load_checkpoint(checkpoint)
    weights = state["model"]
    if any(k.startswith("detector.") for k in weights):
        raise ValueError(f"{checkpoint}: a pre-training checkpoint (keys 'detector.*'); predict with a fine-tuned "
                         f"checkpoint (finetune_run's epoch_<E>.pth)")
    meta = state.get("meta") or {}
    recorded = meta.get("detector") if isinstance(meta.get("detector"), dict) else None
    trained_classes = list(meta.get("classes") or classes)
    if trained_classes != list(classes):
        raise ValueError(f"{checkpoint}: trained for classes {trained_classes}, but the store holds {list(classes)}")
    if detector_cfg is None:
        if recorded is None:
            raise ValueError(f"{checkpoint}: no detector config recorded in the checkpoint; pass detector_cfg")
        detector_cfg = recorded
    check_same_variant(checkpoint, recorded, detector_cfg)
    cfg = with_num_classes(detector_cfg, len(trained_classes), log)
    model, _, postprocess = build_detector(cfg)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        first = str(err).splitlines()[:4]
        raise ValueError(f"{checkpoint}: does not fit the detector config {cfg} ({' '.join(first)})") from None
    return model, postprocess, cfg, trained_classes


@torch.inference_mode()
def predict_tiles(model, postprocess, dataset, classes, device, batch_size: int = 4, num_workers: int = 0,
                  score_thr: float | None = 0.05) -> dict:
    """``{class: [(tile name, score, polygon (8,) tile pixels), ...]}`` for every tile of ``dataset``
    (a ``TileDetectionDataset`` built with ``train=False``), scores >= ``score_thr``."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_detection)
    model.eval().to(device)
    detections = defaultdict(list)
    for batch in loader:
        outputs = model(batch.images.to(device), batch.masks.to(device))
        # Boxes come out normalised to the padded batch; PostProcess scales them by the padded size and
        # undoes each tile's resize (its realised (sx, sy)), giving tile pixels.
        scale = torch.tensor([m["scale_factor"] for m in batch.meta], dtype=torch.float32, device=device)
        results = postprocess(outputs, tuple(batch.images.shape[-2:]), scale_factors=scale)
        for info, result in zip(batch.meta, results):
            keep = result["scores"] >= score_thr if score_thr is not None else slice(None)
            scores = result["scores"][keep].cpu().numpy()
            labels = result["labels"][keep].cpu().numpy()
            polygons = result["polygons"][keep].double().cpu().numpy()
            for score, label, polygon in zip(scores, labels, polygons):
                detections[classes[int(label)]].append((info["tile"], float(score), polygon))
    return dict(detections)


def predict_run(checkpoint, store, out_dir, detector_cfg: dict | None = None, data_cfg: dict | None = None,
                score_thr: float = 0.05, patch_nms_iou: float = 0.5, merge_nms_iou: float = 0.1,
                batch_size: int = 4, num_workers: int = 0, device: str = "auto",
                threads: int | None = None) -> dict:
    """Detect on every tile of ``store``, merge to full images; returns the ``predict.json`` summary.

    Args:
        checkpoint: a fine-tuning ``epoch_<E>.pth``.
        store: the tile store to predict on (e.g. the test split's).
        out_dir: output folder (module docstring); a finished one (same checkpoint and settings) is kept.
        detector_cfg: ``build_detector`` config; None = the one recorded in the checkpoint.
        data_cfg: the fine-tuning data config (``resize``; flips and max_objects do not apply here).
        score_thr, patch_nms_iou, merge_nms_iou: the merge settings (SPEC 5: 0.05, 0.5, 0.1).
        batch_size, num_workers: inference batching.
        device: 'auto', 'cpu', 'cuda'. One process (run it on one GPU).
        threads: PyTorch intra-op threads (the job's CPUs); None keeps PyTorch's default (one per core).
    Returns:
        dict with ``merged_dir``, ``tiles_dir``, ``zip``, ``num_tile_dets`` / ``num_merged`` per class, ...
    """
    out_dir = Path(out_dir)
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist (is its epoch in the fine-tuning run's "
                                f"train.checkpoint_epochs?)")
    data = DataConfig.from_dict(data_cfg, "finetune")
    params = MergeParams(score_thr=score_thr, patch_nms_iou=patch_nms_iou, merge_nms_iou=merge_nms_iou,
                         naming="mmrotate")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if threads:
        torch.set_num_threads(int(threads))
    tiles = TileStore.open(store)
    settings = {"checkpoint": f"{checkpoint.resolve()}:{file_digest(checkpoint)}",
                "store": str(tiles.attrs.get("fingerprint")), "resize": data.to_dict()["resize"],
                "score_thr": score_thr, "patch_nms_iou": patch_nms_iou, "merge_nms_iou": merge_nms_iou,
                "detector": detector_cfg}
    recover_swap(out_dir, lambda folder: (folder / SUMMARY).is_file())  # the summary is written last
    done = read_json(out_dir / SUMMARY)
    if done is not None and done.get("settings") == settings:
        log.info("%s: finished predictions found for these settings: nothing to do", out_dir)
        return done

    started = time.perf_counter()
    model, postprocess, cfg, classes = load_finetuned(checkpoint, detector_cfg, tiles.classes)
    dataset = build_detection_dataset(tiles, train=False, resize=data.resize, filter_empty=False)
    dev = resolve_device(device)
    log.info("predicting %d tiles of %s with %s on %s", len(dataset), tiles.path, checkpoint, dev)
    detections = predict_tiles(model, postprocess, dataset, classes, dev, batch_size, num_workers, score_thr)

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():  # left by a killed run
        shutil.rmtree(tmp)
    write_task1_folder(detections, tmp / "tiles", classes)
    merged = merge_task1_folder(tmp / "tiles", tmp / "merged", classes, params, make_zip=True)
    summary = {"settings": settings, "checkpoint": str(checkpoint), "store": str(tiles.path), "detector": cfg,
               "classes": classes, "tiles": len(dataset), "images": int(tiles.index["image_id"].nunique()),
               "tiles_dir": str(out_dir / "tiles"), "merged_dir": str(out_dir / "merged"),
               "zip": str(out_dir / "merged.zip"), "num_tile_dets": merged["num_tile_dets"],
               "num_merged": merged["num_merged"], "device": str(dev),
               "seconds": round(time.perf_counter() - started, 2)}
    write_json(tmp / SUMMARY, summary)
    swap_in(tmp, out_dir)
    log.info("%d tile detections -> %d merged detections in %s", sum(summary["num_tile_dets"].values()),
             sum(summary["num_merged"].values()), out_dir / "merged")
    return summary
