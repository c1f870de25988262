"""The ``mutdet`` command: every pipeline stage is also reachable outside Snakemake.

    mutdet check-config [CONFIG [OVERLAY...]]           OVERLAYs merged over CONFIG (as several --configfile)
    mutdet generate-synthetic OUTDIR [--config CONFIG]
    mutdet tile --dataset NAME --split SPLIT OUT.zarr [--config CONFIG] [--threads N] [--overwrite]
    mutdet tile --images DIR [--labels DIR] --classes dota_v1 OUT.zarr [--size 800 --gap 200]
    mutdet export-tiles STORE OUTDIR [--overwrite]
    mutdet info STORE [--json]                       format, arrays, dimensions, descriptions of any store
    mutdet verify STORE                              decode every chunk of a tile / stage store (exit 1 if broken)
    mutdet inspect STORE [--out DIR]                 pictures + statistics of a pseudo-label stage store
    mutdet export-pseudo-labels STORE... OUTDIR      DOTA txt with cluster_k classes + embeddings
    mutdet evaluate --dets DIR --labels DIR --out results.json [--convention dota|mmrotate]
    mutdet merge --tile-dets DIR --out DIR [--zip] [--labels DIR]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from .logs import configure_logging

log = logging.getLogger("mutdet")


def _cmd_check_config(args) -> int:
    from .config import load_config, read_overlays
    from .datasets.splits import check_dataset_layout
    from .runs.plan import check_checkpoint_files, check_run_configs

    config = load_config(args.config, overrides=read_overlays(args.overlays))
    problems = [p for name, e in config["datasets"].items() for p in check_dataset_layout(e, name)]
    # the run and weight-file checks of the dry run too: the README promises every weight file is checked here
    problems += check_run_configs(config) + check_checkpoint_files(config)
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    if not problems:
        print(f"{args.config or 'config.yaml'}: valid ({len(config['datasets'])} datasets)")
    return 1 if problems else 0


def _cmd_generate_synthetic(args) -> int:
    from .config import load_config
    from .synthetic.stage import generate_from_config

    config = load_config(args.config)
    generate_from_config(config["synthetic"], args.outdir)
    return 0


def _cmd_tile(args) -> int:
    from .tiling.stage import tile_dataset_split

    if args.images:
        entry = {
            "source": "dota", "root": None, "classes": args.classes, "labelled": args.labels is not None,
            "tiling": {"sizes": [args.size], "gaps": [args.gap], "rates": args.rates,
                       "img_rate_thr": args.img_rate_thr, "iof_thr": args.iof_thr},
        }
        from .datasets.dota import read_dota_folder
        from .datasets.splits import resolve_classes
        from .tiling.stage import tiling_params
        from .tiling.tiler import tile_split

        records = read_dota_folder(args.images, args.labels, class_names=resolve_classes(args.classes),
                                   require_labels=args.labels is not None)
        tile_split(records, args.out, tiling_params(entry["tiling"]), resolve_classes(args.classes),
                   dataset=args.dataset or "custom", split=args.split or "all", threads=args.threads,
                   overwrite=args.overwrite)
    else:
        from .config import load_config

        if not (args.dataset and args.split):
            raise SystemExit("mutdet tile: give --dataset and --split (from the config) or --images")
        config = load_config(args.config)
        if args.dataset not in config["datasets"]:
            raise SystemExit(f"mutdet tile: dataset {args.dataset!r} is not in the config ({sorted(config['datasets'])})")
        tile_dataset_split(config["datasets"][args.dataset], args.dataset, args.split, args.out,
                           results_dir=config["results_dir"], threads=args.threads, overwrite=args.overwrite)
    return 0


def _cmd_export_tiles(args) -> int:
    from .tiling.export import export_tiles

    n = export_tiles(args.store, args.outdir, overwrite=args.overwrite)
    log.info("wrote %d tiles to %s", n, args.outdir)
    return 0


def _cmd_info(args) -> int:
    from .store_info import format_info, store_info

    info = store_info(args.store)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def _cmd_verify(args) -> int:
    from .store_manifest import verify_store

    ok, message = verify_store(args.store)
    print(message, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mutdet", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", help="also write the log to this file")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check-config", help="validate a config file and the dataset folders it names")
    p.add_argument("config", nargs="?", default=None)
    p.add_argument("overlays", nargs="*", help="config files merged over CONFIG in order, as Snakemake merges "
                                               "several --configfile values (e.g. configs/paper_text.yaml)")
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("generate-synthetic", help="generate the synthetic aerial dataset (DOTA format)")
    p.add_argument("outdir")
    p.add_argument("--config", default=None)
    p.set_defaults(func=_cmd_generate_synthetic)

    p = sub.add_parser("tile", help="cut a dataset split into tiles (mmrotate img_split.py semantics)")
    p.add_argument("out", help="tile store to write (.zarr folder)")
    p.add_argument("--config", default=None, help="config file (default: config.yaml)")
    p.add_argument("--dataset", help="dataset name in the config")
    p.add_argument("--split", help="split name")
    p.add_argument("--images", help="tile a DOTA-layout folder of images instead of a configured dataset")
    p.add_argument("--labels", help="DOTA labelTxt folder for --images (omit for unlabelled images)")
    p.add_argument("--classes", default="dota_v1", help="class list name for --images")
    p.add_argument("--size", type=int, default=800)
    p.add_argument("--gap", type=int, default=200)
    p.add_argument("--rates", type=float, nargs="+", default=[1.0])
    p.add_argument("--img-rate-thr", type=float, default=0.6)
    p.add_argument("--iof-thr", type=float, default=0.7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.set_defaults(func=_cmd_tile)

    p = sub.add_parser("export-tiles", help="write a tile store as mmrotate split files (images/ + annfiles/)")
    p.add_argument("store")
    p.add_argument("outdir")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_export_tiles)

    from .evaluation.cli import add_evaluate_arguments, add_merge_arguments, evaluate_cli, merge_cli
    from .pseudo_labels.cli import (EXPORT_HELP, INSPECT_HELP, add_export_pseudo_labels_arguments,
                                    add_inspect_arguments, export_pseudo_labels_cli, inspect_cli)

    p = sub.add_parser("inspect", help=INSPECT_HELP)
    add_inspect_arguments(p)
    p.set_defaults(func=inspect_cli)

    p = sub.add_parser("export-pseudo-labels", help=EXPORT_HELP)
    add_export_pseudo_labels_arguments(p)
    p.set_defaults(func=export_pseudo_labels_cli)

    p = sub.add_parser("evaluate", help="rotated-box AP of Task1 detections (dota or mmrotate convention)")
    add_evaluate_arguments(p)
    p.set_defaults(func=evaluate_cli)

    p = sub.add_parser("merge", help="merge tile detections into full-image Task1 files (+ --zip, + --labels eval)")
    add_merge_arguments(p)
    p.set_defaults(func=merge_cli)

    p = sub.add_parser("info", help="what a tile or stage store holds: format, summary, and every array's shape, "
                                    "dtype, dimension names, description and units")
    p.add_argument("store")
    p.add_argument("--json", action="store_true", help="print the same as JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("verify", help="check a tile or stage store thoroughly: decode every chunk of every array")
    p.add_argument("store")
    p.set_defaults(func=_cmd_verify)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        # Errors of bad input are the user's to fix: a one-line message, not a traceback.
        log.error("%s", err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
