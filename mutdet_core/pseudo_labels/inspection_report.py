"""``report.md``: the inspection's statistics as a page a person reads without the code.

``write_report(stats, out_dir)`` turns the dict that ``inspect_store`` writes to ``stats.json`` into
Markdown: what the store holds, the proposal caps and the tiles that hit them, recall of ground truth at
IoU 0.3 / 0.5 / 0.7 (overall, per object-size bucket, per image, per class), cluster purity with the
matched boxes it rests on, and what each picture shows.
"""
from __future__ import annotations

from pathlib import Path

from .quality import RECALL_IOUS

MAX_ROWS = 40  # table rows per section; images.csv / tiles.csv / clusters.csv have every row
MAX_TILE_NAMES = 30


def _pct(value) -> str:
    return "-" if value is None or value != value else f"{100 * value:.1f} %"


def _recall_table(rows: dict, first: str, extra: dict | None = None) -> list[str]:
    ious = [f"recall_at_{t:g}" for t in RECALL_IOUS]
    head = [first, *(extra or {}).keys(), "objects", *[f"IoU {t:g}" for t in RECALL_IOUS], "mean best IoU"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        cells = [str(name), *[str(v[name]) for v in (extra or {}).values()], str(r.get("objects", 0)),
                 *[_pct(r.get(k)) for k in ious], "-" if "mean_best_iou" not in r else f"{r['mean_best_iou']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _caps(stats: dict) -> list[str]:
    caps = stats.get("proposal_cap") or {}
    if not caps:
        return ["No stage behind this store caps the proposals per tile (SAM, or ground-truth boxes)."]
    lines = ["| stage | parameter | cap per tile | tiles at the cap | tiles |", "|---|---|---|---|---|"]
    notes = []
    for stage, c in caps.items():
        if "error" in c:
            notes.append(f"- {stage}: {c['error']}")
            continue
        lines.append(f"| {stage} | `{c['key']}` | {c['cap']} | {c['tiles_at_cap']} | {c['tiles']} |")
        if c["tiles_at_cap"]:
            names = c["tiles_at_cap_names"][:MAX_TILE_NAMES]
            more = c["tiles_at_cap"] - len(names)
            notes.append(f"- {stage} at the cap: {', '.join(names)}"
                         + (f" and {more} more (`tiles.csv`, column `{stage}_at_cap`)" if more > 0 else ""))
    hit = any(c.get("tiles_at_cap") for c in caps.values())
    lines += [""] + notes
    if hit:
        lines += ["", "A tile at the cap kept only its largest proposals: objects beyond the cap (often the small "
                      "ones) cannot be recalled. Raise the cap when many tiles sit there."]
    return lines


def _ground_truth(gt: dict) -> list[str]:
    if not gt.get("gt_objects"):
        return ["The tile store has no ground truth: no recall or purity."]
    overall = ", ".join(f"{_pct(gt.get(f'recall_at_{t:g}'))} at IoU {t:g}" for t in RECALL_IOUS)
    lines = [f"{gt['gt_objects']} ground-truth objects, counted per tile (an object in two overlapping tiles "
             f"counts twice). An object is recalled when some pseudo-box overlaps it with rotated IoU >= t "
             f"(any box, no one-to-one matching). Recall: {overall}; mean best IoU {gt['mean_best_iou']:.3f}.", ""]
    sizes = gt.get("size_buckets", {})
    bounds = {name: f"{lo:g}-{hi:g}" if hi is not None else f">= {lo:g}"
              for name, (lo, hi) in sizes.get("sqrt_area_px", {}).items()}
    lines += ["### Per object size", "", f"Size: {sizes.get('measure', '')}.", ""]
    lines += _recall_table(gt.get("recall_per_size", {}), "size", {"sqrt(area) px": bounds})
    images = gt.get("recall_per_image", {})
    shown = dict(sorted(images.items(), key=lambda kv: -kv[1].get("objects", 0))[:MAX_ROWS])
    some = f", the {len(shown)} with most objects (all in `images.csv`)" if len(shown) < len(images) else ""
    lines += ["", "### Per image", "", f"{len(images)} images{some}.", ""]
    lines += _recall_table(shown, "image")
    classes = gt.get("recall_per_class", {})
    lines += ["", "### Per class", ""] + _recall_table(dict(sorted(classes.items(), key=lambda kv: -kv[1]["objects"])),
                                                      "class")
    return lines


def _purity(gt: dict, clusters: dict | None) -> list[str]:
    if "matched_boxes" not in gt:
        return []
    thr = gt["iou_thr"]
    title = "Matched boxes and cluster purity" if "cluster_purity" in gt else "Matched boxes"
    lines = ["", f"## {title}", "",
             f"{gt['matched_boxes']} of the {gt['boxes_compared']} pseudo-boxes in labelled tiles "
             f"({_pct(gt['matched_boxes_fraction'])}) overlap a ground-truth object with IoU >= {thr:g}; "
             f"each takes that object's class. The other boxes (background, parts, groups) are not scored"
             f"{' and do not enter the purity' if 'cluster_purity' in gt else ''}."]
    if "cluster_purity" in gt:
        k = (clusters or {}).get("num_clusters", "?")
        nmi = "undefined: one class matched" if gt["cluster_nmi"] != gt["cluster_nmi"] else f"{gt['cluster_nmi']:.3f}"
        lines += ["", f"**Cluster purity {gt['cluster_purity']:.3f}** over those {gt['matched_boxes']} matched boxes, "
                      f"in {gt['clusters_with_matched_boxes']} of {k} clusters (NMI {nmi}; "
                      f"one cluster for everything would score {gt['majority_class_fraction']:.3f}). Per cluster: "
                      f"`clusters.csv` (`matched_gt_boxes`, `top_class`, `top_class_fraction`)."]
    per_class = gt.get("matched_boxes_per_class", {})
    if per_class:
        lines += ["", "| class | matched boxes |", "|---|---|"]
        lines += [f"| {c} | {n} |" for c, n in sorted(per_class.items(), key=lambda kv: -kv[1])]
    return lines


def _pictures(stats: dict, pictures: list[str]) -> list[str]:
    fmt = stats["format"]
    thr = (stats.get("ground_truth") or {}).get("iou_thr")
    at = f"IoU >= {thr:g}" if thr is not None else "the inspection's IoU threshold"
    lines = ["", "## Pictures", "",
             f"- `tiles/*.png` ({len(pictures)} tiles): each with a legend strip underneath. Ground truth is "
             f"drawn 1 px, white where some box recalls it ({at}), red where none does."]
    if fmt == "mutdet-masks":
        lines.append("  Masks are filled, one colour per mask.")
    elif fmt == "mutdet-pseudo-labels":
        lines.append("  Pseudo-boxes (2 px) take their cluster's colour; the legend names the tile's clusters "
                     "(most boxes first) and `clusters.csv` gives every cluster's colour.")
        lines.append("- `clusters_montage.png`: one row per cluster, largest first, headed by its name, its colour "
                     "in the tile pictures and its matched boxes; `clusters/<name>.png` shows more crops.")
    else:
        lines.append(f"  Pseudo-boxes (2 px): cyan where they overlap an object with {at}, yellow where they "
                     f"do not.")
    lines.append("- Histograms: `boxes_per_tile.png`, and `box_size.png` (sqrt(w h), tile px) with "
                 "`aspect_ratio.png` (w / h) for boxes, `mask_area.png` for masks.")
    return lines


def _clusters(stats: dict, rows: list[dict]) -> list[str]:
    c = stats.get("clusters")
    if not c:
        return []
    lines = ["", "## Clusters", "", f"{c['num_clusters']} clusters ({c['empty_clusters']} empty); boxes per cluster: "
             f"median {c['sizes'].get('median', 0):g}, max {c['sizes'].get('max', 0):g}."]
    if rows:
        shown = rows[:MAX_ROWS]
        lines += ["", f"The {len(shown)} largest" + (" (all in `clusters.csv`)" if len(shown) < len(rows) else "")
                  + "; colour: the cluster's colour in the tile pictures; matched: boxes with IoU >= the threshold "
                    "with a labelled object, the support of the top class's share.", "",
                  "| cluster | colour | boxes | mean similarity | matched | top class | its share |",
                  "|---|---|---|---|---|---|---|"]
        for r in shown:
            lines.append(f"| {r['cluster']} | `{r['colour']}` | {r['boxes']} | {r['mean_similarity']:.3f} | "
                         f"{r['matched_gt_boxes']} | {r['top_class'] or '-'} | {_pct(r['top_class_fraction'])} |")
    return lines


def write_report(stats: dict, out_dir, pictures: list[str] = (), clusters: list[dict] = ()) -> Path:
    """Write ``out_dir/report.md`` from the ``stats.json`` dict (and the ``clusters.csv`` rows, largest
    first); returns its path."""
    unit = "masks" if stats["format"] == "mutdet-masks" else "boxes"
    lines = [f"# Inspection of `{Path(stats['store']).name}` ({stats['format']})", "",
             f"{stats['rows']} {unit} in {stats['tiles']} tiles ({stats['tiles_without_rows']} of them without any); "
             f"median {stats.get('rows_per_tile', {}).get('median', 0):g} per tile. Store `{stats['store']}`, "
             f"tiles `{stats['tile_store']}`.", "", "## Proposal cap", ""]
    lines += _caps(stats)
    gt = stats.get("ground_truth")
    if gt is not None or stats["format"] != "mutdet-masks":
        lines += ["", "## Recall of ground truth", ""] + _ground_truth(gt or {})
        lines += _purity(gt or {}, stats.get("clusters"))
    lines += _clusters(stats, list(clusters))
    lines += _pictures(stats, list(pictures))
    path = Path(out_dir) / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
