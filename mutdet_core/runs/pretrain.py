"""Rule ``pretrain``: detection pre-training on the pseudo-labels (SPEC 2.7 and 4), one run folder.

``pretrain_run`` composes the finished pieces: ``PseudoLabelledTiles`` (tiles + pseudo-boxes,
pseudo-classes, embeddings), ``build_pretrainer`` (MutDet, DETReg, UP-DETR, AlignDet) and the training
engine (resumable, DDP-ready). The run folder::

    out_dir/
        epoch_<E>.pth     model checkpoints (``model``: the pre-training model's state dict, detector under
                          ``detector.``; ``meta``: kind, method, detector config, num_classes, inputs)
        last.pth          full resume state (engine)
        losses.csv        loss curves (engine); tensorboard/, train_config.json
        run.json          identity of the run (record.py)
        pretrain.json     summary: method, losses at start and end, iterations, seconds, checkpoints

The number of pseudo-classes is read from the clusters store (``attrs["num_clusters"]``: fewer than
configured when the clustering adapted to a small set), the embedding width from its PCA dimension.
"""
from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

from ..data import collate_detection
from ..engine import TrainConfig, build_train_loader, init_distributed, is_main_process, train
from ..engine.checkpoint import seed_everything
from ..engine.distributed import barrier, detect_launch
from ..pretraining import build_pretrainer, check_method_config, pretraining_detector_config
from ..pretraining.method_config import method_train_overrides
from .pseudo_dataset import PseudoLabelledTiles, build_pretraining_dataset
from .record import finished_summary, fingerprint, log_done, loss_summary, run_identity, start_run, write_json
from .settings import DataConfig, resolve_device, with_num_classes

log = logging.getLogger("mutdet.runs.pretrain")

SUMMARY = "pretrain.json"


def pretrain_train_values(method_cfg: dict, train_cfg: dict | None, world_size: int = 1) -> dict:
    """The ``TrainConfig`` fields of a pre-training run of ``world_size`` processes: ``pretrain.train`` with
    the method's own optimiser settings over it (``method_config.method_train_overrides``: AlignDet's released
    lr for the run's total batch, weight decay, gradient clipping and warm-up unless ``optimizer: shared``)."""
    values = dict(train_cfg or {})
    total_batch = int(values.get("batch_size", TrainConfig.batch_size)) * world_size
    return {**values, **method_train_overrides(method_cfg, total_batch)}


def pretrain_run(tile_stores, pseudo_label_stores, clusters_store, out_dir, method_cfg: dict,
                 detector_cfg: dict | None = None, train_cfg: dict | None = None, data_cfg: dict | None = None,
                 device: str = "auto", overwrite: bool = False) -> Path:
    """Pre-train a detector on pseudo-labels; returns the final checkpoint ``out_dir/epoch_<epochs>.pth``.

    Args:
        tile_stores: paths of the pre-training tile stores (e.g. the four RSDet4 training splits).
        pseudo_label_stores: the ``pseudo_labels.zarr`` of each tile store, same order.
        clusters_store: the ``clusters.zarr`` they were assigned with (number of pseudo-classes).
        out_dir: the run folder (module docstring).
        method_cfg: ``build_pretrainer`` method config (``method`` required; ``embedding_dim`` defaults to
            the clusters' PCA width and must equal it when given).
        detector_cfg: ``build_detector`` config; ``num_classes`` is set here, ``backbone.freeze_all``
            defaults to true (SPEC 4: the backbone is fully frozen in pre-training).
        train_cfg: ``TrainConfig`` fields (``find_unused_parameters`` defaults to what the method needs);
            ``pretrain_train_values`` puts the method's own settings over them (AlignDet's released lr
            scaled to the total batch, weight decay, gradient clipping and warm-up unless ``optimizer: shared``).
        data_cfg: ``settings.DataConfig`` fields, pre-training defaults (resize 1024, max_objects 1000).
        device: 'auto', 'cpu', 'cuda'; under torchrun / srun each process takes its local GPU.
        overwrite: a folder holding a run of other inputs or settings is emptied and the run starts
            afresh (otherwise ``RunFolderError``); a run of the same identity always resumes.
    Raises:
        ValueError, StageError, RunFolderError: bad configs, stores that do not belong together, a run
        folder of another run; all before any training.
    """
    out_dir = Path(out_dir)
    method_cfg = dict(method_cfg or {})
    method = check_method_config(method_cfg)
    train_values = pretrain_train_values(method_cfg, train_cfg, detect_launch().world_size)
    cfg = TrainConfig.from_dict(train_values)
    data = DataConfig.from_dict(data_cfg, "pretrain")
    tiles = PseudoLabelledTiles(tile_stores, pseudo_label_stores, clusters_store)
    given_dim = method_cfg.get("embedding_dim")
    if given_dim is not None and int(given_dim) != tiles.embedding_dim:
        raise ValueError(f"method {method}: embedding_dim {given_dim} but the pseudo-label embeddings of "
                         f"{clusters_store} are {tiles.embedding_dim}-d (pseudo_labels.clustering.pca_dim)")
    method_cfg["embedding_dim"] = tiles.embedding_dim
    detector = pretraining_detector_config(with_num_classes(detector_cfg, tiles.num_classes, log))

    identity = run_identity("pretrain", {"method": method_cfg, "detector": detector, "data": data.to_dict()},
                            tiles.fingerprints(), cfg)
    info, dev = init_distributed(resolve_device(device))
    done = finished_summary(out_dir, SUMMARY, identity, overwrite, info.is_main, log)
    barrier()  # every process sees the folder after the main one emptied it (overwrite)
    if done is not None:
        log_done(log, out_dir, done)
        return Path(done["checkpoint"])

    started = time.perf_counter()
    dataset = build_pretraining_dataset(tiles, data)
    loader = build_train_loader(dataset, cfg.batch_size, collate_detection, seed=cfg.seed, num_workers=cfg.num_workers)
    seed_everything(cfg.seed)  # the initial weights too: a rerun from scratch is the same run
    model, criterion = build_pretrainer(method_cfg, copy.deepcopy(detector))
    if "find_unused_parameters" not in train_values:
        cfg.find_unused_parameters = bool(model.find_unused_parameters)
    total_iterations = len(loader) * cfg.epochs

    def after_step(model, criterion, iteration):  # AlignDet's EMA momentum schedule needs the run length
        model.on_iteration(iteration, total_iterations)

    if is_main_process():
        out_dir.mkdir(parents=True, exist_ok=True)
        start_run(out_dir, identity)
        log.info("pre-training %s: %d tiles with pseudo-boxes (of %d), %d pseudo-classes, %d-d embeddings, "
                 "%d iterations", method, len(dataset), len(tiles), tiles.num_classes, tiles.embedding_dim,
                 total_iterations)
    meta = {"kind": "pretrain", "method": method, "method_cfg": method_cfg, "detector": detector,
            "num_classes": tiles.num_classes, "inputs": tiles.fingerprints()}
    result = train(model, criterion, loader, cfg, out_dir, dev, log=log, after_step=after_step, meta=meta)
    final = Path(result["checkpoints"][cfg.epochs])
    if is_main_process():
        summary = {"fingerprint": fingerprint(identity), "kind": "pretrain", "method": method,
                   "method_cfg": method_cfg, "detector": detector, "data": data.to_dict(), "train": cfg.to_dict(),
                   **tiles.summary(), "tiles_used": len(dataset), "epochs": result["epoch"],
                   "iterations": result["iteration"], "resumed_from": result["resumed_from"],
                   "world_size": info.world_size, "device": str(dev),
                   "seconds": round(time.perf_counter() - started, 2), **loss_summary(out_dir / "losses.csv"),
                   "checkpoint": str(final),
                   "checkpoints": {str(e): str(p) for e, p in sorted(result["checkpoints"].items())}}
        write_json(out_dir / SUMMARY, summary)
        log.info("pre-training %s done: loss %s -> %s over %d iterations, %s", method, summary["loss_start"],
                 summary["loss_end"], summary["iterations"], final)
    return final
