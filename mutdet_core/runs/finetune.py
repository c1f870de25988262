"""Rule ``finetune``: supervised fine-tuning on a fraction of a labelled split (SPEC 2.8 and 5).

``finetune_run`` selects whole images (``select_fraction``: seeded, nested), builds the detector with the
dataset's classes, optionally starts from a pre-training checkpoint (non-strict transfer: classification
branches and the DN label embedding fresh, method modules dropped) and trains with the engine. Run folder::

    out_dir/
        image_ids.txt     the chosen training images, one per line (the data-fraction artifact)
        transfer.json     only with init_checkpoint: {checkpoint, loaded, skipped, new} key lists
        epoch_<E>.pth     checkpoints at train.checkpoint_epochs and the last epoch (``meta``: kind, detector
                          config, classes, init checkpoint, fraction); what predict_run reads
        last.pth, losses.csv, tensorboard/, train_config.json, run.json
        finetune.json     summary: images, tiles, losses at start and end, iterations, seconds, checkpoints
"""
from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

from ..data import build_detection_dataset, collate_detection, select_fraction, write_id_list
from ..data.fractions import check_fraction
from ..engine import TrainConfig, build_train_loader, init_distributed, is_main_process, train
from ..engine.checkpoint import seed_everything
from ..engine.distributed import barrier
from ..engine.trainer import LAST
from ..models.detector import build_detector
from ..pretraining import load_pretraining_checkpoint
from ..pretraining.transfer import read_checkpoint
from ..tiling.store import TileStore
from .record import (file_digest, finished_summary, fingerprint, log_done, loss_summary, run_identity, start_run,
                     write_json)
from .settings import DataConfig, resolve_device, with_num_classes

log = logging.getLogger("mutdet.runs.finetune")

SUMMARY = "finetune.json"
IMAGE_IDS = "image_ids.txt"
TRANSFER = "transfer.json"


def checkpoint_detector_config(path) -> dict | None:
    """The detector config recorded in a checkpoint written by these runs (``meta["detector"]``), or None
    for a foreign checkpoint (then only the transfer's shape check guards the variant)."""
    state = read_checkpoint(path)
    meta = state.get("meta") if isinstance(state, dict) else None
    return dict(meta["detector"]) if isinstance(meta, dict) and isinstance(meta.get("detector"), dict) else None


def check_same_variant(path, recorded: dict | None, detector_cfg: dict) -> None:
    """A clear error when ``path`` was trained with another detector variant than ``detector_cfg``.

    Variants (ars_detr, arcsl_ddetr, csl_ddetr, rotated_ddetr) can share every parameter shape (the
    deformable-decoder variants only lack the DN and query embeddings), so a non-strict load would "work"
    and silently fine-tune a mismatched network."""
    if recorded is None:
        return
    theirs, ours = recorded.get("variant", "ars_detr"), detector_cfg.get("variant", "ars_detr")
    if theirs != ours:
        raise ValueError(f"{path}: checkpoint of detector variant {theirs!r}, but this run builds {ours!r}; "
                         f"pre-train with the fine-tuning variant or choose a checkpoint of {ours!r}")


def finetune_run(train_store, out_dir, detector_cfg: dict | None = None, train_cfg: dict | None = None,
                 data_cfg: dict | None = None, fraction: float = 1.0, fraction_seed: int = 0,
                 init_checkpoint=None, device: str = "auto", overwrite: bool = False) -> dict[int, Path]:
    """Fine-tune on ``fraction`` of the images of ``train_store``; returns ``{epoch: checkpoint path}``.

    Args:
        train_store: the training split's tile store (its ``attrs["classes"]`` give num_classes).
        out_dir: the run folder (module docstring).
        detector_cfg: ``build_detector`` config (num_classes is set here).
        train_cfg: ``TrainConfig`` fields (``checkpoint_epochs`` e.g. [12, 24, 36]).
        data_cfg: ``settings.DataConfig`` fields, fine-tuning defaults (resize 800).
        fraction: in (0, 1]; whole images, ``select_fraction(image ids, fraction, fraction_seed)``.
        init_checkpoint: a pre-training ``epoch_<E>.pth`` (or any detector checkpoint), None = from scratch
            (ImageNet backbone weights when ``backbone.weights`` is set).
        device: 'auto', 'cpu', 'cuda'; under torchrun / srun each process takes its local GPU.
        overwrite: a folder holding a run of other inputs or settings is emptied and the run starts
            afresh (otherwise ``RunFolderError``); a run of the same identity always resumes.
    Raises:
        ValueError: a bad fraction, config, or a checkpoint of another detector variant, before training.
    """
    out_dir = Path(out_dir)
    fraction = check_fraction(fraction)
    cfg = TrainConfig.from_dict(train_cfg)
    data = DataConfig.from_dict(data_cfg, "finetune")
    store = TileStore.open(train_store)
    classes = store.classes
    if not classes:
        raise ValueError(f"{store.path}: the tile store names no classes (attrs['classes'])")
    detector = with_num_classes(detector_cfg, len(classes), log)
    image_ids = select_fraction(store.index["image_id"], fraction, fraction_seed)
    init = None if init_checkpoint is None else Path(init_checkpoint)
    recorded = None
    if init is not None:
        recorded = checkpoint_detector_config(init)  # reads the file: a missing or foreign one fails here
        check_same_variant(init, recorded, detector)
    inputs = {"train_store": str(store.attrs.get("fingerprint")), "image_ids": image_ids,
              "init_checkpoint": None if init is None else f"{init.resolve()}:{file_digest(init)}"}
    identity = run_identity("finetune", {"detector": detector, "data": data.to_dict(), "fraction": fraction,
                                         "fraction_seed": int(fraction_seed), "classes": classes}, inputs, cfg)
    info, dev = init_distributed(resolve_device(device))
    done = finished_summary(out_dir, SUMMARY, identity, overwrite, info.is_main, log)
    barrier()  # every process sees the folder after the main one emptied it (overwrite)
    if done is not None:
        log_done(log, out_dir, done)
        return {int(e): Path(p) for e, p in done["checkpoints"].items()}

    started = time.perf_counter()
    seed_everything(cfg.seed)  # the initial weights too: a rerun from scratch is the same run
    model, criterion, _ = build_detector(copy.deepcopy(detector))
    report = None
    if init is not None and not (cfg.resume and (out_dir / LAST).is_file()):
        # Loaded before anything is written, so a checkpoint that does not fit leaves no run folder; a
        # resume skips it (the engine restores last.pth over whatever would be loaded here).
        report = load_pretraining_checkpoint(model, init)
        log.info("transfer from %s: skipped checkpoint keys (%d): %s", init, len(report["skipped"]),
                 " ".join(report["skipped"]))
        log.info("transfer from %s: new detector keys, left at their initialisation (%d): %s", init,
                 len(report["new"]), " ".join(report["new"]))
    dataset = build_detection_dataset(store, train=True, resize=data.resize, flip_ratios=data.flip_ratios,
                                      image_ids=image_ids, max_objects=data.max_objects)
    if len(dataset) == 0:
        raise ValueError(f"{store.path}: the {len(image_ids)} selected images have no tile with an object")
    loader = build_train_loader(dataset, cfg.batch_size, collate_detection, seed=cfg.seed, num_workers=cfg.num_workers)
    if is_main_process():
        out_dir.mkdir(parents=True, exist_ok=True)
        write_id_list(out_dir / IMAGE_IDS, image_ids)
        start_run(out_dir, identity)
        if report is not None:
            write_json(out_dir / TRANSFER, {"checkpoint": str(init), "checkpoint_detector": recorded,
                                            "num_loaded": len(report["loaded"]), **report})
        log.info("fine-tuning on %d of %d images (fraction %g, seed %d): %d tiles, %d classes", len(image_ids),
                 store.index["image_id"].nunique(), fraction, fraction_seed, len(dataset), len(classes))
    meta = {"kind": "finetune", "detector": detector, "classes": classes, "dataset": store.attrs.get("dataset"),
            "init_checkpoint": None if init is None else str(init), "fraction": fraction,
            "fraction_seed": int(fraction_seed)}
    result = train(model, criterion, loader, cfg, out_dir, dev, log=log, meta=meta)
    checkpoints = {int(e): Path(p) for e, p in sorted(result["checkpoints"].items())}
    if is_main_process():
        summary = {"fingerprint": fingerprint(identity), "kind": "finetune", "detector": detector,
                   "data": data.to_dict(), "train": cfg.to_dict(), "train_store": str(store.path),
                   "classes": classes, "fraction": fraction, "fraction_seed": int(fraction_seed),
                   "images": len(image_ids), "tiles": len(dataset),
                   "init_checkpoint": None if init is None else str(init),
                   "epochs": result["epoch"], "iterations": result["iteration"], "resumed_from": result["resumed_from"],
                   "world_size": info.world_size, "device": str(dev),
                   "seconds": round(time.perf_counter() - started, 2), **loss_summary(out_dir / "losses.csv"),
                   "checkpoints": {str(e): str(p) for e, p in checkpoints.items()}}
        write_json(out_dir / SUMMARY, summary)
        log.info("fine-tuning done: loss %s -> %s over %d iterations; checkpoints %s", summary["loss_start"],
                 summary["loss_end"], summary["iterations"], [str(p) for p in checkpoints.values()])
    return checkpoints
