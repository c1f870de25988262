"""Subcommands ``mutdet inspect STORE`` and ``mutdet export-pseudo-labels STORE... OUTDIR``.

``mutdet_core/cli.py`` registers them::

    p = sub.add_parser("inspect", help=...);  add_inspect_arguments(p);  p.set_defaults(func=inspect_cli)
    p = sub.add_parser("export-pseudo-labels", help=...);  add_export_pseudo_labels_arguments(p)
    p.set_defaults(func=export_pseudo_labels_cli)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

INSPECT_HELP = "pictures and statistics of a masks / boxes / embeddings / pseudo-labels store"
EXPORT_HELP = "write pseudo-labels as DOTA txt (cluster_k classes) + per-tile embeddings (.npy)"


def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="a .zarr store written by a pseudo-label stage")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: <store without .zarr>_inspect beside the store)")
    parser.add_argument("--tiles", type=int, default=8, help="tiles drawn (seeded sample; default 8)")
    parser.add_argument("--clusters", type=int, default=8, help="largest clusters shown as crop montages (8)")
    parser.add_argument("--crops", type=int, default=24, help="crops per cluster montage (24)")
    parser.add_argument("--iou-thr", type=float, default=0.5, help="IoU for recall / purity vs ground truth (0.5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tile and crop samples (0)")
    parser.add_argument("--tile-store", type=Path, default=None,
                        help="the tile store, when it moved since the stage ran (checked by fingerprint)")
    parser.add_argument("--boxes-store", type=Path, default=None,
                        help="the boxes store, when it moved since the stage ran (checked by fingerprint)")


def inspect_cli(args: argparse.Namespace) -> int:
    from .inspection import inspect_store

    out = args.out or args.store.with_name(args.store.name.removesuffix(".zarr") + "_inspect")
    stats = inspect_store(args.store, out, num_tiles=args.tiles, num_clusters_shown=args.clusters,
                          crops_per_cluster=args.crops, iou_thr=args.iou_thr, seed=args.seed,
                          tile_store=args.tile_store, boxes_store=args.boxes_store)
    brief = {k: stats[k] for k in ("format", "tiles", "rows", "tiles_without_rows") if k in stats}
    gt = stats.get("ground_truth", {})
    brief.update({k: gt[k] for k in ("recall", "recall_at_0.3", "recall_at_0.7", "matched_boxes", "cluster_purity",
                                     "cluster_nmi") if k in gt})
    brief.update({f"tiles_at_{stage}_cap": f"{c['tiles_at_cap']} (cap {c['cap']})"
                  for stage, c in stats.get("proposal_cap", {}).items() if "cap" in c})
    print(json.dumps(brief, indent=1))
    print(f"pictures and statistics in {out} (summary: {Path(out) / 'report.md'})")
    return 0


def add_export_pseudo_labels_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stores", type=Path, nargs="+", help="one or more pseudo-labels .zarr stores")
    parser.add_argument("out_dir", type=Path, help="output folder (annfiles/, embeddings/, classes.txt)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")


def export_pseudo_labels_cli(args: argparse.Namespace) -> int:
    from .export import export_pseudo_labels

    manifest = export_pseudo_labels(args.stores, args.out_dir, overwrite=args.overwrite)
    tiles = sum(s["tiles"] for s in manifest["sources"])
    boxes = sum(s["boxes"] for s in manifest["sources"])
    print(f"{tiles} tiles, {boxes} boxes, {manifest['num_clusters']} classes -> {args.out_dir}")
    return 0
