"""Export pseudo-labels for other tools: DOTA txt with ``cluster_k`` classes + per-tile embeddings.

``export_pseudo_labels(stores, out_dir)`` writes, as MutDet's ``step1_5`` did (``SAM_Cluster_Labels_*``
and ``SAM_Obj_Embeds_*``)::

    out_dir/
        annfiles/<tile>.txt     x1 y1 ... x4 y4 cluster_k 0   (k = pseudo_class, 0..K-1, largest mask first)
        embeddings/<tile>.npy   (n, P) float32, L2-normalised, row i = line i of the txt; (0, P) when empty
        classes.txt             cluster_0 ... cluster_<K-1>, one per line (line k+1 = pseudo-class k)
        manifest.json           source stores and fingerprints, K, P, tile and box counts

Tile names and images are those of the tile store (``mutdet export-tiles`` writes the images), so the pair
(images/, annfiles/) is an mmrotate split-format dataset with K pseudo-classes.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..store_schema import cluster_name
from ..tiling.export import annfile_lines
from .clustering import open_pseudo_labels
from .inspection import linked_boxes_store


def export_pseudo_labels(stores, out_dir, overwrite: bool = False, progress: bool | None = None) -> dict:
    """Write the pseudo-labels of one or more pseudo-labels stores (e.g. several splits) to ``out_dir``.

    Args:
        stores: a path or a list of paths of ``mutdet-pseudo-labels`` stores fitted with the same clusters.
        out_dir: output folder; an existing non-empty one is an error unless ``overwrite``.
    Returns:
        the manifest written to ``manifest.json``.
    """
    paths = [stores] if isinstance(stores, (str, Path)) else list(stores)
    opened = [open_pseudo_labels(p) for p in paths]
    clusters = {s.attrs["inputs"]["clusters"]["fingerprint"] for s in opened}
    if len(clusters) > 1:
        raise ValueError(f"export: the stores use different clusters ({sorted(clusters)}); their cluster_k "
                         f"names would not mean the same thing")
    names = [name for s in opened for name in s.index["tile"]]
    duplicated = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) < len(names) else []
    if duplicated:
        raise ValueError(f"export: tiles {duplicated[:3]} appear in more than one store")
    out_dir = Path(out_dir)
    if not overwrite and out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty; choose another folder or pass overwrite")
    (out_dir / "annfiles").mkdir(parents=True, exist_ok=True)
    (out_dir / "embeddings").mkdir(parents=True, exist_ok=True)
    num_clusters = int(opened[0].attrs["num_clusters"])
    classes = [cluster_name(k) for k in range(num_clusters)]
    manifest = {"num_clusters": num_clusters, "classes_file": "classes.txt", "sources": []}
    for store in opened:
        boxes = linked_boxes_store(store)
        polygons, labels = boxes.read_all("polygon"), store.read_all("pseudo_class")
        embeddings = store.read_all("embedding")
        for i, name in enumerate(tqdm(store.index["tile"], desc="export", unit="tile",
                                      disable=None if progress is None else not progress)):
            rows = store.rows(i)
            lines = annfile_lines(polygons[rows], [classes[c] for c in labels[rows]], np.zeros(rows.stop - rows.start))
            (out_dir / "annfiles" / f"{name}.txt").write_text("".join(line + "\n" for line in lines))
            np.save(out_dir / "embeddings" / f"{name}.npy", np.ascontiguousarray(embeddings[rows], np.float32))
        manifest["sources"].append({"store": str(store.path), "fingerprint": store.fingerprint,
                                    "tile_store": store.attrs["inputs"]["tiles"]["path"],
                                    "tiles": len(store), "boxes": store.num_rows})
    manifest["embedding_dim"] = int(opened[0].root["embedding"].shape[1])
    (out_dir / "classes.txt").write_text("\n".join(classes) + "\n")
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
