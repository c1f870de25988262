"""Clustering stage (SPEC 2.5-2.6): PCA 2048 -> 256 + L2 norm, spherical k-means 256, pseudo-classes.

The released code only *applies* a pre-fitted ``meta_pca_info.pkl`` (``pca_A``, ``pca_b``, ``ctrs``):
``emb = normalise(feat @ A.T + b)``, ``label = argmax(emb @ normalise(ctrs).T)``. The fitting is ours:

* ``fit_clusters``: PCA (no whitening; the released file does not say) from the covariance of the
  pre-training set's embeddings, or of a seeded uniform sample of ``sample_size`` rows, accumulated in
  float64 chunk by chunk, so it never holds the 2048-d features of the whole set in memory; then faiss
  spherical k-means (``faiss.Kmeans(spherical=True)``, on GPU when faiss has one, k-means++ seeding) on
  the projected, normalised sample, seeded. faiss' own subsampling (``max_points_per_centroid``) is
  switched off: the sample is the fitting set.
* ``assign_pseudo_labels``: every box of one embeddings store -> its 256-d normalised embedding and its
  pseudo-class, the nearest centroid by cosine.

Stores: ``mutdet-clusters`` (whole arrays ``pca_components`` (P, D), ``pca_mean`` (D,),
``explained_variance`` (P,), ``centroids`` (K, P) L2-normalised, ``fit_cluster_sizes`` (K,)) and
``mutdet-pseudo-labels`` (rows aligned with the boxes: ``embedding`` (N, P) float32 L2-normalised,
``pseudo_class`` (N,) int32 in [0, K), ``similarity`` (N,) float32 cosine to that centroid). Pseudo-class
``k`` is named ``cluster_k`` everywhere (``attrs["classes"]``, the export, the inspection, pre-training),
with the same 0-based number as the stored id and the row of ``centroids``.

Fewer fitting boxes than clusters is an error by default (the message says how many of each and what to
change); ``too_few_boxes="adapt"`` lowers the number of clusters to the number of boxes with a warning, and
the clusters store records the number actually used (``attrs["num_clusters"]``): the pre-training class
count must be read from there.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .artifact import StageError, StageWriter, existing_output, input_entry, open_stage, stage_fingerprint
from ..store_schema import cluster_name
from .stores import open_embeddings  # not .embeddings: the assignment job needs no torch

log = logging.getLogger(__name__)

CLUSTERS_FORMAT = "mutdet-clusters"
PSEUDO_LABELS_FORMAT = "mutdet-pseudo-labels"
READ_ROWS = 1 << 15  # rows of 2048-d float32 read at a time (256 MB)


def _non_finite_error(store, bad_rows: np.ndarray) -> ValueError:
    tiles = store.index["tile"].to_numpy()[np.unique(store.tile_of_rows(bad_rows))]
    listed = ", ".join(tiles[:5]) + (f" and {len(tiles) - 5} more" if len(tiles) > 5 else "")
    return ValueError(f"{store.path}: NaN or inf in the features of {len(bad_rows)} boxes, in tiles "
                              f"{listed}; rerun the embedding stage for that store (broken weights or pixels?)")


def iterate_rows(store, name: str, selected: np.ndarray | None = None):
    """Yield ``(global_row_indices, values)`` blocks of a row array, optionally only the ``selected``
    sorted row indices; every block read is checked for NaN/inf first (the error names the tiles)."""
    array = store.root[name]
    for lo in range(0, array.shape[0], READ_ROWS):
        hi = min(lo + READ_ROWS, array.shape[0])
        block = np.asarray(array[lo:hi])
        finite = np.isfinite(block.reshape(len(block), -1)).all(axis=1)
        if not finite.all():
            raise _non_finite_error(store, lo + np.nonzero(~finite)[0])
        rows = np.arange(lo, hi)
        if selected is not None:
            pick = selected[(selected >= lo) & (selected < hi)] - lo
            rows, block = rows[pick], block[pick]
        yield rows, block


def fit_pca(blocks, dim: int) -> dict:
    """PCA from streamed blocks of ``(n_i, D)`` rows: ``components`` (dim, D) float32 (rows = principal
    axes, by decreasing variance, each with its largest-magnitude entry positive so the result is
    reproducible), ``mean`` (D,) float32, ``explained_variance`` (dim,) float32, ``n`` rows seen and
    ``total_variance`` (trace of the covariance)."""
    total, outer, n = None, None, 0
    for block in blocks:
        block = np.asarray(block, dtype=np.float64)
        if total is None:
            total, outer = np.zeros(block.shape[1]), np.zeros((block.shape[1], block.shape[1]))
        total += block.sum(axis=0)
        outer += block.T @ block
        n += len(block)
    if n < 2:
        raise ValueError(f"PCA needs at least 2 rows, got {n}")
    if dim > len(total):
        raise ValueError(f"PCA to {dim} dimensions is impossible from {len(total)}-d features; lower pca_dim")
    mean = total / n
    covariance = (outer - n * np.outer(mean, mean)) / (n - 1)
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1][:dim]
    components = vectors[:, order].T
    signs = np.sign(components[np.arange(dim), np.abs(components).argmax(axis=1)])
    components *= np.where(signs == 0, 1, signs)[:, None]
    return {"components": components.astype(np.float32), "mean": mean.astype(np.float32),
            "explained_variance": np.clip(values[order], 0, None).astype(np.float32), "n": n,
            "total_variance": float(np.trace(covariance))}


def project(features: np.ndarray, components: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``normalise((features - mean) @ components.T)``: ``(n, D)`` -> ``(n, P)`` float32 unit rows
    (a zero row stays zero)."""
    z = (np.asarray(features, np.float32) - mean) @ components.T
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    return (z / np.maximum(norm, 1e-12)).astype(np.float32)


def kmeans_plus_plus(x: np.ndarray, k: int, seed: int = 0, sample_size: int | None = None) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) on unit rows: ``(k, P)`` float32 initial centroids,
    drawn from a seeded sample of ``sample_size`` rows (default ``100 k``) so its cost does not grow with n."""
    rng = np.random.default_rng(seed)
    n = len(x)
    sample_size = min(n, sample_size or 100 * k)
    xs = x if sample_size == n else x[np.sort(rng.choice(n, sample_size, replace=False))]
    chosen = [int(rng.integers(sample_size))]
    distance = np.maximum(2.0 - 2.0 * (xs @ xs[chosen[0]]), 0.0)  # squared distance between unit vectors
    for _ in range(k - 1):
        total = distance.sum()
        j = int(rng.choice(sample_size, p=distance / total)) if total > 0 else int(rng.integers(sample_size))
        chosen.append(j)
        distance = np.minimum(distance, np.maximum(2.0 - 2.0 * (xs @ xs[j]), 0.0))
    return np.ascontiguousarray(xs[chosen], dtype=np.float32)


def spherical_kmeans(x: np.ndarray, k: int, niter: int = 20, nredo: int = 1, seed: int = 0,
                     use_gpu: bool | str = "auto", init: str = "kmeans++") -> np.ndarray:
    """faiss spherical k-means of unit rows ``x`` (n, P): ``(k, P)`` float32 unit centroids.

    ``init``: ``"kmeans++"`` (default) or ``"random"`` (faiss' own: k random rows). On a 50k x 256 mixture
    with 256 clusters, random seeding ended 2.2 % above scikit-learn's objective and k-means++ seeding
    1 %; the seeding costs ~1 s. Seeded; on CPU the result is reproducible for a machine and thread count."""
    import faiss  # here, not at the top: assign_pseudo_labels (a job of its own) needs no faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    if init not in ("kmeans++", "random"):
        raise ValueError(f"k-means init must be 'kmeans++' or 'random', got {init!r}")
    gpu = faiss.get_num_gpus() > 0 if use_gpu == "auto" else bool(use_gpu)
    best, best_objective = None, math.inf
    for run in range(nredo):  # our own restarts, so each one gets its own k-means++ seeding
        kmeans = faiss.Kmeans(x.shape[1], k, niter=niter, nredo=1, seed=seed + run, spherical=True, gpu=gpu,
                              verbose=False, max_points_per_centroid=math.ceil(len(x) / k) + 1,
                              min_points_per_centroid=1)
        kmeans.train(x, init_centroids=kmeans_plus_plus(x, k, seed + run) if init == "kmeans++" else None)
        objective = float(kmeans.obj[-1])  # sum of squared distances to the nearest centroid: lower is better
        if objective < best_objective:
            best, best_objective = kmeans.centroids.astype(np.float32), objective
    return best / np.maximum(np.linalg.norm(best, axis=1, keepdims=True), 1e-12)


def assign(embeddings: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid by cosine: ``(pseudo_class (n,) int32, similarity (n,) float32)``."""
    if not len(embeddings):
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    similarity = embeddings @ centroids.T
    label = similarity.argmax(axis=1)
    return label.astype(np.int32), similarity[np.arange(len(label)), label].astype(np.float32)


def fit_clusters(embedding_stores, out_path, pca_dim: int = 256, num_clusters: int = 256,
                 sample_size: int | None = None, seed: int = 0, niter: int = 20, nredo: int = 1,
                 init: str = "kmeans++", too_few_boxes: str = "error", use_gpu: bool | str = "auto",
                 overwrite: bool = False) -> Path:
    """Fit the PCA and the k-means centroids on the pre-training set's embeddings.

    Args:
        embedding_stores: one path or a list (e.g. the four RSDet4 datasets).
        out_path: the ``mutdet-clusters`` store to write.
        pca_dim: P (256). num_clusters: K (256).
        sample_size: fit on a seeded uniform sample of this many boxes (None: all boxes).
        niter, nredo, init: k-means iterations, restarts (the best objective is kept), seeding
            (``"kmeans++"`` or faiss' ``"random"``).
        too_few_boxes: ``"error"`` (default) or ``"adapt"`` when the fitting set has fewer boxes than K.
        use_gpu: faiss on GPU: ``"auto"`` (when faiss has one), True or False.
    """
    paths = [embedding_stores] if isinstance(embedding_stores, (str, Path)) else list(embedding_stores)
    stores = [open_embeddings(p) for p in paths]
    if too_few_boxes not in ("error", "adapt"):
        raise ValueError(f"clustering: too_few_boxes must be 'error' or 'adapt', got {too_few_boxes!r}")
    dims = {int(s.attrs["feature_dim"]) for s in stores}
    if len(dims) > 1:
        raise ValueError(f"clustering: the embedding stores have different feature sizes {sorted(dims)}")
    params = {"pca_dim": pca_dim, "num_clusters": num_clusters, "sample_size": sample_size, "seed": seed,
              "niter": niter, "nredo": nredo, "init": init, "too_few_boxes": too_few_boxes, "whiten": False}
    inputs = {f"embeddings_{i}": input_entry(s) for i, s in enumerate(stores)}
    fingerprint = stage_fingerprint(CLUSTERS_FORMAT, params, {k: v["fingerprint"] for k, v in inputs.items()})
    if existing_output(out_path, fingerprint, CLUSTERS_FORMAT, overwrite) is not None:
        return Path(out_path)

    total = sum(s.num_rows for s in stores)
    n = total if sample_size is None else min(int(sample_size), total)
    k = num_clusters
    if n < k:
        message = (f"clustering: {n} boxes to fit {k} clusters (from {total} boxes in {len(stores)} embedding "
                   f"stores{'' if n == total else f', sample_size {sample_size}'}); k-means needs at least one "
                   f"box per cluster")
        if too_few_boxes == "error":
            raise ValueError(message + f". Lower pseudo_labels.clustering.num_clusters to at most {n}, add "
                             f"images, or set pseudo_labels.clustering.too_few_boxes: adapt")
        if n == 0:
            raise ValueError(message + "; there is nothing to cluster (no box in any tile)")
        log.warning("%s: 'adapt' lowers the number of clusters to %d", message, n)
        k = n
    # Global row ids across stores; a seeded sample is drawn once and split per store.
    rng = np.random.default_rng(seed)
    chosen = np.arange(total) if n == total else np.sort(rng.choice(total, size=n, replace=False))
    starts = np.cumsum([0] + [s.num_rows for s in stores])
    per_store = [chosen[(chosen >= lo) & (chosen < hi)] - lo for lo, hi in zip(starts[:-1], starts[1:])]

    def blocks():
        for store, rows in zip(stores, per_store):
            for _, block in iterate_rows(store, "features", rows):
                yield block

    pca = fit_pca(blocks(), pca_dim)
    if pca["n"] - 1 < pca_dim:
        log.warning("clustering: %d boxes span at most %d PCA dimensions of the %d asked for; the others carry "
                    "no variance", pca["n"], pca["n"] - 1, pca_dim)
    x = np.concatenate([project(b, pca["components"], pca["mean"]) for b in blocks()])
    centroids = spherical_kmeans(x, k, niter=niter, nredo=nredo, seed=seed, use_gpu=use_gpu, init=init)
    label, similarity = assign(x, centroids)
    sizes = np.bincount(label, minlength=k)
    attrs = {"params": params, "inputs": inputs, "fingerprint": fingerprint, "num_clusters": int(k),
             "pca_dim": int(pca_dim), "fit_rows": int(n), "total_rows": int(total),
             "mean_similarity": float(similarity.mean()), "empty_clusters": int((sizes == 0).sum()),
             "explained_variance_ratio": float(pca["explained_variance"].sum() / max(pca["total_variance"], 1e-12))}
    no_tiles = pd.DataFrame({"tile": [], "image_id": []})  # this store is not grouped by tile
    with StageWriter(out_path, CLUSTERS_FORMAT, no_tiles, {}, attrs) as writer:
        writer.write_array("pca_components", pca["components"])
        writer.write_array("pca_mean", pca["mean"])
        writer.write_array("explained_variance", pca["explained_variance"])
        writer.write_array("centroids", centroids)
        writer.write_array("fit_cluster_sizes", sizes.astype(np.int64))
        path = writer.finish()
    log.info("clustering: PCA %d -> %d, %d clusters on %d boxes, mean cosine to centroid %.3f",
             pca["components"].shape[1], pca_dim, k, n, attrs["mean_similarity"])
    return path


def open_clusters(path):
    return open_stage(path, CLUSTERS_FORMAT)


def assign_pseudo_labels(embeddings_store, clusters_store, out_path, overwrite: bool = False) -> Path:
    """Pseudo-label every box of ``embeddings_store`` with the fitted ``clusters_store``.

    The store written is row-aligned with the embeddings and boxes stores; it records both inputs and
    carries the boxes and tile store entries (paths, fingerprints) for inspection and export.
    """
    embeddings = open_embeddings(embeddings_store)
    clusters = open_clusters(clusters_store)
    components = np.asarray(clusters.root["pca_components"][...])
    mean = np.asarray(clusters.root["pca_mean"][...])
    centroids = np.asarray(clusters.root["centroids"][...])
    if components.shape[1] != int(embeddings.attrs["feature_dim"]):
        raise StageError(f"{clusters.path} projects {components.shape[1]}-d features but {embeddings.path} holds "
                         f"{embeddings.attrs['feature_dim']}-d ones; refit the clusters on these embeddings")
    inputs = {"embeddings": input_entry(embeddings), "clusters": input_entry(clusters),
              "boxes": embeddings.attrs["inputs"]["boxes"], "tiles": embeddings.attrs["inputs"]["tiles"]}
    params = {"num_clusters": int(clusters.attrs["num_clusters"]), "pca_dim": int(components.shape[0])}
    fingerprint = stage_fingerprint(PSEUDO_LABELS_FORMAT, params,
                                    {k: inputs[k]["fingerprint"] for k in ("embeddings", "clusters")})
    if existing_output(out_path, fingerprint, PSEUDO_LABELS_FORMAT, overwrite) is not None:
        return Path(out_path)
    attrs = {"params": params, "inputs": inputs, "fingerprint": fingerprint,
             "tile_fingerprint": embeddings.attrs["tile_fingerprint"], "num_clusters": params["num_clusters"],
             "classes": [cluster_name(j) for j in range(params["num_clusters"])]}
    rows = {"embedding": ((components.shape[0],), "float32"), "pseudo_class": ((), "int32"),
            "similarity": ((), "float32")}
    blocks = iterate_rows(embeddings, "features")
    buffered = np.zeros((0, components.shape[0]), np.float32)
    with StageWriter(out_path, PSEUDO_LABELS_FORMAT, embeddings.index, rows, attrs) as writer:
        for i in range(len(embeddings)):
            need = embeddings.rows(i).stop - embeddings.rows(i).start
            while len(buffered) < need:  # blocks and tiles do not line up: keep the remainder
                buffered = np.concatenate([buffered, project(next(blocks)[1], components, mean)])
            emb, buffered = buffered[:need], buffered[need:]
            label, similarity = assign(emb, centroids)
            writer.append_tile(i, {"embedding": emb, "pseudo_class": label, "similarity": similarity})
        path = writer.finish()
    return path


def open_pseudo_labels(path):
    return open_stage(path, PSEUDO_LABELS_FORMAT)

