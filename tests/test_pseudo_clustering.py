"""Clustering stage: PCA, faiss spherical k-means (vs scikit-learn), determinism, assignment, bad input."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from mutdet_core.pseudo_labels import (assign_pseudo_labels, fit_clusters, open_clusters, open_embeddings,
                                       open_pseudo_labels)
from mutdet_core.pseudo_labels.artifact import StageWriter
from mutdet_core.pseudo_labels.clustering import assign, fit_pca, project, spherical_kmeans
from mutdet_core.pseudo_labels.embeddings import FORMAT as EMBEDDINGS_FORMAT
from pseudo_label_fixtures import chain, tile_store_path  # noqa: F401  (fixtures)


def partition_inertia(x: np.ndarray, label: np.ndarray) -> float:
    """k-means objective of a partition: squared distances to each cluster's mean."""
    total = 0.0
    for c in np.unique(label):
        members = x[label == c]
        total += float(((members - members.mean(axis=0)) ** 2).sum())
    return total


def unit_mixture(n: int, d: int, k: int, seed: int) -> np.ndarray:
    """Seeded mixture of k directions with noise, normalised (like normalised PCA embeddings)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    x = centres[rng.integers(0, k, n)] * 0.6 + rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_faiss_spherical_kmeans_matches_sklearn_inertia():
    x = unit_mixture(6000, 32, 24, seed=0)
    centroids = spherical_kmeans(x, 24, niter=30, seed=0, use_gpu=False)
    assert np.allclose(np.linalg.norm(centroids, axis=1), 1, atol=1e-5)
    ours = partition_inertia(x, assign(x, centroids)[0])
    sk = KMeans(24, n_init=1, random_state=0, max_iter=100).fit(x)
    theirs = partition_inertia(x, sk.labels_)
    assert abs(ours - theirs) / theirs < 0.01, (ours, theirs)


def test_kmeans_is_deterministic_for_a_seed():
    x = unit_mixture(3000, 16, 10, seed=1)
    a = spherical_kmeans(x, 10, seed=3, use_gpu=False)
    assert np.array_equal(a, spherical_kmeans(x, 10, seed=3, use_gpu=False))
    assert not np.array_equal(a, spherical_kmeans(x, 10, seed=4, use_gpu=False))


def test_streamed_pca_matches_sklearn():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(800, 40)) @ rng.normal(size=(40, 40))).astype(np.float32) + 3.0
    ours = fit_pca([x[:300], x[300:]], 10)  # two blocks, as read from a store
    reference = PCA(10, svd_solver="full").fit(x)
    assert np.allclose(ours["explained_variance"], reference.explained_variance_, rtol=1e-4)
    assert np.allclose(np.abs(ours["components"] @ reference.components_.T), np.eye(10), atol=1e-3)
    z = project(x, ours["components"], ours["mean"])
    expected = reference.transform(x)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(np.abs((z * expected).sum(axis=1)), 1, atol=1e-4)  # same directions up to signs
    # the sign convention makes the result reproducible: largest entry of each axis positive
    assert (ours["components"][np.arange(10), np.abs(ours["components"]).argmax(1)] > 0).all()


def test_assignment_is_the_nearest_centroid_by_cosine():
    x = unit_mixture(500, 8, 5, seed=2)
    centroids = unit_mixture(5, 8, 5, seed=3)
    label, similarity = assign(x, centroids)
    distance = ((x[:, None, :] - centroids[None]) ** 2).sum(-1)
    assert np.array_equal(label, distance.argmin(axis=1))
    assert np.allclose(similarity, (x * centroids[label]).sum(1), atol=1e-6)


def test_clusters_and_pseudo_labels_of_the_real_chain(chain, tmp_path):
    clusters, pseudo = open_clusters(chain["clusters"]), open_pseudo_labels(chain["pseudo_labels"])
    emb = open_embeddings(chain["embeddings"])
    assert clusters.root["pca_components"].shape == (16, 512) and clusters.root["centroids"].shape == (8, 16)
    assert clusters.root["pca_mean"].shape == (512,) and clusters.attrs["num_clusters"] == 8
    assert np.array_equal(pseudo.offsets, emb.offsets)
    e = pseudo.read_all("embedding")
    assert e.shape == (emb.num_rows, 16) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    label = pseudo.read_all("pseudo_class")
    assert label.min() >= 0 and label.max() < 8 and len(np.unique(label)) >= 4
    assert pseudo.attrs["classes"][:2] == ["cluster_0", "cluster_1"]  # cluster_k is pseudo_class k
    # same inputs and seed -> identical centroids and labels
    again = fit_clusters([chain["embeddings"]], tmp_path / "c2.zarr", pca_dim=16, num_clusters=8)
    assert np.array_equal(open_clusters(again).root["centroids"][...], clusters.root["centroids"][...])
    relabelled = assign_pseudo_labels(chain["embeddings"], again, tmp_path / "p2.zarr")
    assert np.array_equal(open_pseudo_labels(relabelled).read_all("pseudo_class"), label)


def test_seeded_sample_is_reproducible(chain, tmp_path):
    a = fit_clusters(chain["embeddings"], tmp_path / "a.zarr", pca_dim=8, num_clusters=4, sample_size=50, seed=7)
    b = fit_clusters(chain["embeddings"], tmp_path / "b.zarr", pca_dim=8, num_clusters=4, sample_size=50, seed=7)
    c = fit_clusters(chain["embeddings"], tmp_path / "c.zarr", pca_dim=8, num_clusters=4, sample_size=50, seed=8)
    assert open_clusters(a).attrs["fit_rows"] == 50
    ca, cb, cc = (open_clusters(p).root["pca_mean"][...] for p in (a, b, c))
    assert np.array_equal(ca, cb) and not np.array_equal(ca, cc)


def test_too_few_boxes_is_a_clear_error_or_adapts(chain, tmp_path, caplog):
    n = open_embeddings(chain["embeddings"]).num_rows
    with pytest.raises(ValueError, match=rf"{n} boxes to fit 256 clusters.*at most {n}.*too_few_boxes: adapt"):
        fit_clusters(chain["embeddings"], tmp_path / "c.zarr", pca_dim=16, num_clusters=256)
    assert not (tmp_path / "c.zarr").exists()
    with caplog.at_level(logging.WARNING):
        path = fit_clusters(chain["embeddings"], tmp_path / "c.zarr", pca_dim=16, num_clusters=256,
                            too_few_boxes="adapt")
    assert f"lowers the number of clusters to {n}" in caplog.text
    assert open_clusters(path).attrs["num_clusters"] == n
    assert open_clusters(path).root["centroids"].shape == (n, 16)


def _embeddings_store(path, features_per_tile, names):
    tiles = pd.DataFrame({"tile": names, "image_id": [n.split("__")[0] for n in names]})
    inputs = {"tiles": {"path": "", "fingerprint": "x"}, "boxes": {"path": "", "fingerprint": "y"}}
    attrs = {"params": {}, "inputs": inputs,
             "fingerprint": "z", "feature_dim": features_per_tile[0].shape[1], "tile_fingerprint": "x"}
    with StageWriter(path, EMBEDDINGS_FORMAT, tiles, {"features": ((features_per_tile[0].shape[1],), "float32")},
                     attrs) as writer:
        for i, f in enumerate(features_per_tile):
            writer.append_tile(i, {"features": f})
        return writer.finish()


def test_nan_features_name_the_tile(tmp_path):
    rng = np.random.default_rng(0)
    blocks = [rng.random((30, 64), dtype=np.float32) for _ in range(3)]
    blocks[1][4, 7] = np.nan
    blocks[2][0, 0] = np.inf
    path = _embeddings_store(tmp_path / "e.zarr", blocks, ["A__800__0___0", "B__800__0___0", "C__800__0___0"])
    with pytest.raises(ValueError, match=r"2 boxes, in tiles B__800__0___0, C__800__0___0"):
        fit_clusters(path, tmp_path / "c.zarr", pca_dim=8, num_clusters=4)
    assert not (tmp_path / "c.zarr").exists()
