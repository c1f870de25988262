"""Detection data pipeline: oriented-box flips and resize (mmrotate semantics), dataset over a tile store,
padding collate, data fractions."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from mutdet_core.data import (Batch, IMAGENET_MEAN, IMAGENET_STD, Normalize, RRandomFlip, RResize,
                              TileDetectionDataset, build_detection_dataset, build_transforms, collate_detection,
                              flip_obbs, read_id_list, resize_obbs, select_fraction, targets_to_pixel_obbs,
                              write_id_list)
from mutdet_core.data.transforms import flip_image, rescale_size
from mutdet_core.geometry import obb2poly, poly2obb_min_area, valid_obb_mask

DIRECTIONS = ("horizontal", "vertical", "diagonal")


def random_obbs(n: int, rng, size=(800, 600)) -> np.ndarray:
    """le90 boxes, clearly non-square (so w/h cannot swap under rounding), inside a W x H image."""
    width, height = size
    w = rng.uniform(20, 120, n)
    h = w / rng.uniform(1.3, 4.0, n)
    return np.stack([rng.uniform(150, width - 150, n), rng.uniform(150, height - 150, n), w, h,
                     rng.uniform(-math.pi / 2, math.pi / 2, n)], 1)


def angle_diff(a, b):
    """Difference of two le90 angles modulo pi, in [-pi/2, pi/2)."""
    return (np.asarray(a) - np.asarray(b) + math.pi / 2) % math.pi - math.pi / 2


def flip_polygons(polys: np.ndarray, width: int, height: int, direction: str) -> np.ndarray:
    out = polys.copy()
    if direction in ("horizontal", "diagonal"):
        out[:, 0::2] = width - polys[:, 0::2] - 1
    if direction in ("vertical", "diagonal"):
        out[:, 1::2] = height - polys[:, 1::2] - 1
    return out


# ----------------------------------------------------------------------------------------------- flips
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_flipping_the_obb_equals_flipping_its_polygon(direction):
    """Flip a box's corners, convert back with the dataset's polygon -> le90 conversion, and compare with
    flip_obbs: centre, size and angle (modulo pi) agree."""
    rng = np.random.default_rng(0)
    obbs = random_obbs(200, rng)
    flipped_polys = flip_polygons(obb2poly(obbs), 800, 600, direction)
    expected = poly2obb_min_area(flipped_polys, "le90")
    got = flip_obbs(obbs, 800, 600, direction)
    np.testing.assert_allclose(got[:, :4], expected[:, :4], atol=1e-6)
    np.testing.assert_allclose(angle_diff(got[:, 4], expected[:, 4]), 0, atol=1e-6)
    assert np.all((got[:, 4] >= -math.pi / 2) & (got[:, 4] < math.pi / 2))


def test_flip_angle_updates():
    obbs = np.array([[10, 20, 8, 4, 0.3], [10, 20, 8, 4, -math.pi / 2], [10, 20, 8, 4, 0.0]])
    h = flip_obbs(obbs, 100, 50, "horizontal")
    np.testing.assert_allclose(h[:, 4], [-0.3, -math.pi / 2, 0.0], atol=1e-12)  # pi - theta, wrapped to le90
    np.testing.assert_allclose(h[:, 0], 100 - 10 - 1)
    v = flip_obbs(obbs, 100, 50, "vertical")
    np.testing.assert_allclose(v[:, 4], h[:, 4])
    np.testing.assert_allclose(v[:, 1], 50 - 20 - 1)
    d = flip_obbs(obbs, 100, 50, "diagonal")
    np.testing.assert_allclose(d[:, 4], obbs[:, 4])  # a 180 degree rotation keeps the angle
    np.testing.assert_allclose(d[:, :2], [[89, 29]] * 3)
    with pytest.raises(ValueError, match="flip direction"):
        flip_obbs(obbs, 100, 50, "sideways")


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_flip_twice_is_identity_and_matches_the_image(direction):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (600, 800, 3), dtype=np.uint8)
    assert np.array_equal(flip_image(flip_image(image, direction), direction), image)
    obbs = random_obbs(50, rng)
    back = flip_obbs(flip_obbs(obbs, 800, 600, direction), 800, 600, direction)
    np.testing.assert_allclose(back[:, :4], obbs[:, :4], atol=1e-9)
    np.testing.assert_allclose(angle_diff(back[:, 4], obbs[:, 4]), 0, atol=1e-9)

    # Paint one box, flip picture and box: the painted pixels' rectangle is the flipped box.
    box = np.array([[300.0, 200.0, 160.0, 50.0, 0.4]])
    canvas = np.zeros((600, 800), np.uint8)
    cv2.fillPoly(canvas, [np.round(obb2poly(box).reshape(4, 2)).astype(np.int32)], 255)
    flipped_canvas = flip_image(canvas, direction)
    ys, xs = np.nonzero(flipped_canvas)
    (cx, cy), _, _ = cv2.minAreaRect(np.stack([xs, ys], 1).astype(np.float32))
    target = flip_obbs(box, 800, 600, direction)[0]
    assert abs(cx - target[0]) < 1.0 and abs(cy - target[1]) < 1.0
    mask_obb = poly2obb_min_area(cv2.boxPoints(cv2.minAreaRect(np.stack([xs, ys], 1).astype(np.float32))).reshape(8))
    assert abs(angle_diff(mask_obb[4], target[4])) < 0.03


def test_random_flip_probabilities_and_determinism():
    flip = RRandomFlip()
    sample = {"image": np.zeros((4, 6, 3), np.uint8), "obbs": np.zeros((0, 5))}
    rng = np.random.default_rng(5)
    counts = {}
    for _ in range(4000):
        direction = flip(sample, rng).get("flip")
        counts[direction] = counts.get(direction, 0) + 1
    assert set(counts) == {None, *DIRECTIONS}
    assert all(850 < c < 1150 for c in counts.values()), counts  # 1000 expected each; 5 sigma is ~137
    first = [flip(sample, np.random.default_rng(s)).get("flip") for s in range(20)]
    assert first == [flip(sample, np.random.default_rng(s)).get("flip") for s in range(20)]
    with pytest.raises(ValueError, match="sum to at most 1"):
        RRandomFlip((0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="directions"):
        RRandomFlip((0.5,), ("up",))


# ---------------------------------------------------------------------------------------------- resize
def test_resize_800_tile_to_1024_scales_boxes():
    rng = np.random.default_rng(2)
    obbs = random_obbs(20, rng, (800, 800))
    sample = {"image": rng.integers(0, 255, (800, 800, 3), dtype=np.uint8), "obbs": obbs}
    out = RResize(1024)(sample)
    assert out["image"].shape == (1024, 1024, 3)
    assert out["scale_factor"] == pytest.approx((1.28, 1.28))
    np.testing.assert_allclose(out["obbs"][:, :4], obbs[:, :4] * 1.28)
    np.testing.assert_array_equal(out["obbs"][:, 4], obbs[:, 4])
    same = RResize(800)(sample)
    assert same["image"] is sample["image"]  # a tile already at its size is not resampled


def test_resize_keeps_ratio_like_mmcv_and_scales_sizes_by_sqrt():
    assert rescale_size(800, 600, (1024, 1024)) == ((1024, 768), 1.28)
    assert rescale_size(1000, 500, (1333, 800)) == ((1333, 667), 1.333)
    obbs = np.array([[10.0, 20.0, 8.0, 2.0, 0.5]])
    np.testing.assert_allclose(resize_obbs(obbs, 2.0, 0.5), [[20.0, 10.0, 8.0, 2.0, 0.5]])  # sqrt(2 * 0.5) = 1
    np.testing.assert_allclose(resize_obbs(obbs, 2.0, 8.0), [[20.0, 160.0, 32.0, 8.0, 0.5]])


def painted_obb(image: np.ndarray) -> np.ndarray:
    """le90 rectangle of the painted (> 127) pixels of channel 0."""
    ys, xs = np.nonzero(image[..., 0] > 127)
    rect = cv2.minAreaRect(np.stack([xs, ys], 1).astype(np.float32))
    return poly2obb_min_area(cv2.boxPoints(rect).reshape(8).astype(np.float64))


def test_resized_image_and_boxes_agree():
    """The box transform follows the picture: the rectangle of the painted pixels, measured before the
    resize and moved with resize_obbs, is the one measured on the resized picture (to rasterisation)."""
    box = np.array([[300.0, 200.0, 160.0, 50.0, -0.7]])
    canvas = np.zeros((600, 800, 3), np.uint8)
    cv2.fillPoly(canvas, [np.round(obb2poly(box).reshape(4, 2)).astype(np.int32)], (255, 255, 255))
    before = painted_obb(canvas)
    out = RResize(1024)({"image": canvas, "obbs": before[None]})
    after = painted_obb(out["image"])
    np.testing.assert_allclose(after[:4], out["obbs"][0, :4], atol=1.5)
    assert abs(angle_diff(after[4], out["obbs"][0, 4])) < 0.02


def test_normalize_is_imagenet_rgb():
    image = np.zeros((2, 3, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 124, 116, 104
    out = Normalize()({"image": image})["image"]
    assert out.shape == (3, 2, 3) and out.dtype == torch.float32
    expected = [(v - m) / s for v, m, s in zip((124, 116, 104), IMAGENET_MEAN, IMAGENET_STD)]
    torch.testing.assert_close(out[:, 0, 0], torch.tensor(expected, dtype=torch.float32))


# -------------------------------------------------------------------------------------------- datasets
class MemoryStore:
    """Stand-in with the TileStore reading API (index, attrs, read_pixels, read_objects)."""

    def __init__(self, tiles: list[tuple[str, np.ndarray, dict]], classes=("a", "b", "c")):
        self.tiles = tiles
        self.attrs = {"classes": list(classes), "tile_size": tiles[0][1].shape[0]}
        self.index = pd.DataFrame({
            "tile": [f"{img}__1__0___{k}" for k, (img, _, _) in enumerate(tiles)],
            "image_id": [img for img, _, _ in tiles], "x": 0, "y": 0,
            "size": [p.shape[0] for _, p, _ in tiles], "num_objects": [len(o["class_id"]) for _, _, o in tiles]})

    def __len__(self):
        return len(self.tiles)

    def read_pixels(self, i):
        return self.tiles[i][1]

    def read_objects(self, i):
        return self.tiles[i][2]


def objects_from_obbs(obbs, classes, embeddings=None):
    out = {"polygons": obb2poly(np.asarray(obbs, np.float64)).astype(np.float32),
           "class_id": np.asarray(classes, np.int16), "difficulty": np.zeros(len(classes), np.int8)}
    if embeddings is not None:
        out["embeddings"] = embeddings
    return out


def small_store(with_embeddings=False) -> MemoryStore:
    rng = np.random.default_rng(3)
    pix = lambda: rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)  # noqa: E731
    obbs0 = [[20, 20, 12, 6, 0.2], [40, 40, 1.5, 8, 0.0], [30, 10, 10, 3, -1.0]]  # the middle one is too thin
    emb0 = np.arange(3, dtype=np.float32)[:, None].repeat(4, 1) if with_embeddings else None
    tiles = [
        ("img1", pix(), objects_from_obbs(obbs0, [0, 1, 2], emb0)),
        ("img1", pix(), objects_from_obbs([[5, 5, 1, 1, 0.0]], [1],
                                          np.zeros((1, 4), np.float32) if with_embeddings else None)),  # only tiny
        ("img2", pix(), objects_from_obbs(np.zeros((0, 5)), [],
                                          np.zeros((0, 4), np.float32) if with_embeddings else None)),
        ("img3", pix(), objects_from_obbs([[32, 32, 20, 10, 0.5]], [2],
                                          np.full((1, 4), 7, np.float32) if with_embeddings else None)),
    ]
    return MemoryStore(tiles)


def test_dataset_drops_small_boxes_and_empty_tiles():
    store = small_store()
    ds = TileDetectionDataset(store, build_transforms(train=False, resize=None))
    assert len(ds) == 2 and ds.image_ids == ["img1", "img3"]
    sample = ds[0]
    np.testing.assert_array_equal(sample["labels"], [0, 2])  # the 1.5 px wide box is gone
    np.testing.assert_allclose(sample["obbs"], [[20, 20, 12, 6, 0.2], [30, 10, 10, 3, -1.0]], atol=1e-4)
    assert sample["image"].shape == (3, 64, 64)
    assert len(TileDetectionDataset(store, filter_empty=False)) == 4
    capped = TileDetectionDataset(store, max_objects=1)
    assert len(capped[0]["labels"]) == 1
    # img1 has 2 valid boxes, img3 one: the cap drops one (counted, so pre-training can say so)
    assert (capped.num_valid_objects, capped.num_dropped_objects) == (3, 1)
    assert (ds.num_valid_objects, ds.num_dropped_objects) == (3, 0)
    assert TileDetectionDataset(store, image_ids=["img3"]).image_ids == ["img3"]
    with pytest.raises(ValueError, match="not in the store"):
        TileDetectionDataset(store, image_ids=["img9"])


def test_dataset_keeps_embeddings_aligned_with_objects():
    ds = TileDetectionDataset(small_store(with_embeddings=True), build_transforms(resize=None))
    for key in [(0, s) for s in range(8)] + [(1, 0)]:
        sample = ds[key]
        # embedding rows carry the original object index (0, 2) / 7: the dropped object's row is gone
        assert sample["embeddings"][:, 0].tolist() == ([0.0, 2.0] if key[0] == 0 else [7.0])
        assert len(sample["embeddings"]) == len(sample["obbs"]) == len(sample["labels"])


def test_dataset_augmentation_follows_the_sample_seed():
    ds = TileDetectionDataset(small_store(), build_transforms(resize=None))
    flips = [ds[(0, s)]["flip"] for s in range(16)]
    assert flips == [ds[(0, s)]["flip"] for s in range(16)]
    assert len(set(flips)) > 1
    assert ds[0]["flip"] == ds[0]["flip"]  # a plain int key is deterministic too


def test_dataset_rejects_unknown_class_ids():
    store = small_store()
    store.attrs["classes"] = ["a"]
    with pytest.raises(ValueError, match="class ids exceed"):
        TileDetectionDataset(store)


@pytest.fixture(scope="module")
def real_store(shared_data, tmp_path_factory):
    """The two small real DOTA images (P0075 451x839, P1888 712x557) tiled at 800/200."""
    from mutdet_core.datasets.classes import get_class_list
    from mutdet_core.datasets.dota import read_dota_folder
    from mutdet_core.tiling import TilingParams
    from mutdet_core.tiling.tiler import tile_split

    classes = list(get_class_list("dota_v1").names)
    root = shared_data / "dota_sample"
    records = [r for r in read_dota_folder(root / "images", root / "labelTxt", class_names=classes)
               if r.image_id in ("P0075", "P1888")]
    out = tmp_path_factory.mktemp("tiles") / "two.zarr"
    return tile_split(records, out, TilingParams(), classes, dataset="dota_sample", split="train", progress=False)


def test_real_tiles_through_the_pipeline(real_store):
    from mutdet_core.tiling import TileStore

    store = TileStore.open(real_store)
    ds = build_detection_dataset(store, train=True, resize=1024)
    assert len(ds) == len(store)  # both tiles have objects
    for index in range(len(ds)):
        i = int(ds.tile_indices[index])
        objects = store.read_objects(i)
        obbs = poly2obb_min_area(objects["polygons"].astype(np.float64), "le90")
        keep = valid_obb_mask(obbs)
        for seed in range(6):
            sample = ds[(index, seed)]
            assert sample["image"].shape == (3, 1024, 1024)
            expected = resize_obbs(obbs[keep], 1.28, 1.28)
            if sample["flip"] is not None:
                expected = flip_obbs(expected, 1024, 1024, sample["flip"])
            np.testing.assert_allclose(sample["obbs"][:, :4], expected[:, :4], atol=1e-6)
            np.testing.assert_allclose(angle_diff(sample["obbs"][:, 4], expected[:, 4]), 0, atol=1e-6)
            np.testing.assert_array_equal(sample["labels"], objects["class_id"][keep])
    # Without augmentation the image is the stored tile, normalised.
    plain = build_detection_dataset(store, train=False, resize=None)[0]
    pixels = store.read_pixels(int(plain["store_index"])).astype(np.float32)
    expected = (pixels - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    torch.testing.assert_close(plain["image"], torch.from_numpy(expected.transpose(2, 0, 1)))

    batch = collate_detection([ds[(0, 1)], ds[(1, 2)]])
    assert batch.images.shape == (2, 3, 1024, 1024) and not batch.masks.any()
    for target in batch.targets:
        assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
        assert ((target["angles"] >= -math.pi / 2) & (target["angles"] < math.pi / 2)).all()


# ------------------------------------------------------------------------------------------- collate
def test_collate_pads_to_32_and_normalises_to_the_padded_size():
    a = {"image": torch.ones(3, 800, 800), "obbs": np.array([[400.0, 300.0, 100.0, 20.0, 0.5]]),
         "labels": np.array([3]), "difficulty": np.array([1]), "tile": "a", "embeddings": np.ones((1, 4))}
    b = {"image": torch.full((3, 1000, 700), 2.0), "obbs": np.zeros((0, 5)), "labels": np.zeros(0, np.int64),
         "tile": "b", "embeddings": np.zeros((0, 4))}
    batch = collate_detection([a, b])
    assert isinstance(batch, Batch) and len(batch) == 2
    assert batch.images.shape == (2, 3, 1024, 800)
    assert batch.masks[0, :800, :800].logical_not().all() and batch.masks[0, 800:].all()
    assert batch.masks[1, :1000, :700].logical_not().all() and batch.masks[1, :, 700:].all()
    assert batch.images[1, :, 1000:].abs().sum() == 0 and batch.images[1, 0, 0, 0] == 2.0
    torch.testing.assert_close(batch.targets[0]["boxes"], torch.tensor([[400 / 800, 300 / 1024, 100 / 800, 20 / 1024]]))
    assert batch.targets[0]["image_size"].tolist() == [800, 800]
    assert batch.targets[1]["image_size"].tolist() == [1000, 700]
    assert batch.targets[1]["boxes"].shape == (0, 4) and batch.targets[1]["embeddings"].shape == (0, 4)
    back = targets_to_pixel_obbs(batch.targets[0], batch.images.shape[-2:])
    torch.testing.assert_close(back, torch.tensor([[400.0, 300.0, 100.0, 20.0, 0.5]]))
    assert batch.meta[0]["tile"] == "a" and batch.meta[0]["difficulty"].tolist() == [1]
    moved = batch.to("cpu")
    assert moved.targets[0]["labels"].tolist() == [3]


def test_store_dataset_trains_through_the_engine(tmp_path):
    """Stand-in store -> dataset with flips -> seeded loader -> collate -> engine, with a detector-like model."""
    from test_engine import TinyDetector, TinySetCriterion

    from mutdet_core.engine import TrainConfig, build_train_loader, train

    ds = TileDetectionDataset(small_store(with_embeddings=True), build_transforms(resize=96), filter_empty=False)
    loader = build_train_loader(ds, 2, collate_detection, seed=0, num_workers=0)
    cfg = TrainConfig(epochs=1, warmup_iters=1, log_interval=1, progress_bar=False, tensorboard=False)
    torch.manual_seed(0)
    result = train(TinyDetector(), TinySetCriterion(), loader, cfg, tmp_path, "cpu")
    assert result["iteration"] == 2 and (tmp_path / "epoch_1.pth").is_file()


# ------------------------------------------------------------------------------------------ fractions
def test_fractions_are_nested_sorted_and_seeded():
    ids = [f"P{i:04d}" for i in range(200)] * 3  # one id per tile: duplicates are expected
    sets = {f: select_fraction(ids, f, seed=1) for f in (0.1, 0.25, 0.5, 1.0)}
    assert [len(s) for s in sets.values()] == [20, 50, 100, 200]
    assert set(sets[0.1]) < set(sets[0.25]) < set(sets[0.5]) < set(sets[1.0])
    assert all(s == sorted(s) for s in sets.values())
    assert select_fraction(list(reversed(ids)), 0.25, seed=1) == sets[0.25]  # input order is irrelevant
    assert select_fraction(ids, 0.25, seed=2) != sets[0.25]
    assert len(select_fraction(["a", "b", "c"], 0.1)) == 1  # at least one image
    assert len(select_fraction([f"x{i}" for i in range(30)], 0.1)) == 3  # ceil without float noise


@pytest.mark.parametrize("bad, message", [(0, r"\(0, 1\]"), (1.5, r"\(0, 1\]"), (10, "0.1 for 10 %"),
                                          (-0.1, r"\(0, 1\]"), (float("nan"), "number"), (True, "number"),
                                          ("0.5", "number")])
def test_fraction_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        select_fraction(["a", "b"], bad)


def test_fraction_needs_images_and_id_lists_round_trip(tmp_path):
    with pytest.raises(ValueError, match="no image ids"):
        select_fraction([], 0.5)
    path = write_id_list(tmp_path / "fractions" / "dior_r_10.txt", ["b", "a"])
    assert path.read_text() == "a\nb\n" and read_id_list(path) == ["a", "b"]
    with pytest.raises(FileNotFoundError, match="not found"):
        read_id_list(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_id_list(tmp_path / "empty.txt")


def test_tiny_ars_detr_trains_and_resumes_exactly(tmp_path):
    """The real detector (tiny config: dropout and denoising noise draw from the RNGs) through dataset,
    loader and engine; killed in epoch 2 and resumed, it ends with the uninterrupted run's weights."""
    from test_engine import Crash, assert_same_weights, crashing_forward

    from mutdet_core.engine import TrainConfig, build_train_loader, train
    from mutdet_core.models.detector import build_detector

    detector_cfg = dict(num_classes=3, backbone={"name": "tiny", "width": 8}, d_model=32, n_heads=4, ffn_dim=64,
                        num_encoder_layers=1, num_decoder_layers=2, num_queries=10, num_dn_queries=6)
    ds = TileDetectionDataset(small_store(), build_transforms(resize=None), filter_empty=False)
    cfg = TrainConfig(epochs=2, batch_size=2, warmup_iters=2, log_interval=1, progress_bar=False, tensorboard=False)

    def run(out, **kw):
        torch.manual_seed(0)
        model, criterion, _ = build_detector(detector_cfg)
        loader = build_train_loader(ds, 2, collate_detection, seed=3, num_workers=0)
        train(model, criterion, loader, cfg, tmp_path / out, "cpu", **kw)
        return model

    reference = run("a")
    with pytest.raises(Crash):
        run("b", forward_fn=crashing_forward(4))  # second iteration of epoch 2
    assert_same_weights(reference, run("b"))
    torch.manual_seed(0)
    initial, _, _ = build_detector(detector_cfg)
    assert not torch.equal(initial.heads.state_dict()[next(iter(initial.heads.state_dict()))],
                           reference.heads.state_dict()[next(iter(reference.heads.state_dict()))])


def test_batches_do_not_depend_on_the_number_of_workers():
    """Augmentation draws from the sampler's per-sample seeds, so 0 or 2 workers give the same batches."""
    from mutdet_core.engine import build_train_loader

    ds = TileDetectionDataset(small_store(), build_transforms(resize=80), filter_empty=False)
    runs = []
    for workers in (0, 2):
        loader = build_train_loader(ds, 2, collate_detection, seed=5, num_workers=workers)
        loader.sampler.set_epoch(3)
        runs.append(list(loader))
    assert len(runs[0]) == len(runs[1]) == 2
    for a, b in zip(*runs):
        assert torch.equal(a.images, b.images) and [m["flip"] for m in a.meta] == [m["flip"] for m in b.meta]
        for ta, tb in zip(a.targets, b.targets):
            assert all(torch.equal(ta[k], tb[k]) for k in ta)
