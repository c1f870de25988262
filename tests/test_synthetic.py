"""The synthetic aerial dataset: determinism, DOTA output, label geometry, pixels, and realism checks
against the real DOTA fixtures."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import shapely

from mutdet_core.config import ConfigError, validate_config
from mutdet_core.datasets import DOTA_V1, read_dota_folder, read_dota_txt
from mutdet_core.synthetic import (SYNTHETIC_CLASSES, THEMES, draw_scene_grid, generate_scene,
                                   generate_synthetic_dataset)
from mutdet_core.synthetic.dataset import image_rng, image_shape
from mutdet_core.synthetic.layout import SceneObject
from mutdet_core.synthetic.objects import draw_sprite
from mutdet_core.synthetic.sprite import rasterize
from mutdet_core.synthetic.stage import check_synthetic_classes, generate_from_config

SMALL = {"train": 2, "val": 1}


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def five_themes(tmp_path_factory):
    """One image per theme (the theme cycle), 560-680 px: every class, in about a second."""
    root = tmp_path_factory.mktemp("syn5")
    summary = generate_synthetic_dataset(root, splits={"train": 5}, image_size=(560, 680), seed=3)
    records = read_dota_folder(root / "train" / "images", root / "train" / "labelTxt", class_names=SYNTHETIC_CLASSES)
    return root, summary, records


@pytest.fixture(scope="module")
def scenes():
    """In-memory scenes of every theme (objects, not just labels), 640 x 576."""
    return {t: generate_scene(np.random.default_rng([11, i]), 640, 576, SYNTHETIC_CLASSES, theme=t)
            for i, t in enumerate(THEMES)}


# --------------------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    a = generate_synthetic_dataset(tmp_path / "a", splits=SMALL, image_size=(200, 260), seed=7)
    generate_synthetic_dataset(tmp_path / "b", splits=SMALL, image_size=(200, 260), seed=7)
    generate_synthetic_dataset(tmp_path / "c", splits=SMALL, image_size=(200, 260), seed=8)
    fa, fb, fc = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert fa == fb
    assert set(fa) == set(fc)
    assert all(fa[k] != fc[k] for k in fa if k.endswith(".png"))
    assert sorted(k for k in fa if k.endswith(".png")) == [
        "train/images/S0000.png", "train/images/S0001.png", "val/images/S0002.png"]
    assert a["seed"] == 7 and a["splits"]["val"]["images"] == 1


def test_an_image_does_not_depend_on_the_other_splits(tmp_path):
    generate_synthetic_dataset(tmp_path / "a", splits={"train": 1, "val": 1}, image_size=(200, 240), seed=1)
    generate_synthetic_dataset(tmp_path / "b", splits={"train": 2, "val": 1}, image_size=(200, 240), seed=1)
    # Same content, different global id (ids are unique across splits).
    assert (tmp_path / "a/val/images/S0001.png").read_bytes() == (tmp_path / "b/val/images/S0002.png").read_bytes()


def test_rerun_with_fewer_images_leaves_no_stale_files(tmp_path):
    generate_synthetic_dataset(tmp_path, splits={"train": 3}, image_size=(160, 200))
    (tmp_path / "train" / "images" / "notes.md").write_text("user file")
    generate_synthetic_dataset(tmp_path, splits={"train": 1}, image_size=(160, 200))
    assert sorted(p.name for p in (tmp_path / "train" / "images").iterdir()) == ["S0000.png", "notes.md"]
    assert [p.name for p in (tmp_path / "train" / "labelTxt").iterdir()] == ["S0000.txt"]


# ------------------------------------------------------------------------------------ output format
def test_layout_classes_and_summary(five_themes):
    root, summary, records = five_themes
    assert (root / "classes.txt").read_text().split() == list(SYNTHETIC_CLASSES)
    assert set(SYNTHETIC_CLASSES) <= set(DOTA_V1.names)
    assert json.loads((root / "summary.json").read_text()) == summary
    split = summary["splits"]["train"]
    counts = {c: 0 for c in SYNTHETIC_CLASSES}
    for r in records:
        for c in r.classes:
            counts[c] += 1
    assert split["per_class"] == counts
    assert split["objects"] == sum(len(r) for r in records)
    assert [f["theme"] for f in split["files"]] == list(THEMES)
    for f, r in zip(split["files"], records):
        h, w = cv2.imread(str(r.image_path)).shape[:2]
        assert (f["id"], f["width"], f["height"]) == (r.image_id, w, h)
        assert r.gsd == pytest.approx(f["gsd"], rel=1e-5)
        assert 0.15 <= r.gsd <= 0.55
        text = r.label_path.read_text().splitlines()
        assert text[0] == "imagesource:synthetic" and text[1].startswith("gsd:")


def test_every_class_appears_in_a_five_image_dataset(five_themes):
    _, summary, records = five_themes
    assert {c for r in records for c in r.classes} == set(SYNTHETIC_CLASSES)
    assert all(n > 0 for n in summary["splits"]["train"]["per_class"].values())


def test_labels_parse_back_and_match_the_scene(tmp_path, scenes):
    from mutdet_core.datasets.dota import write_dota_txt

    for theme, scene in scenes.items():
        rec = scene.record("S9999")
        write_dota_txt(rec, tmp_path / f"{theme}.txt")
        back = read_dota_txt(tmp_path / f"{theme}.txt", class_names=SYNTHETIC_CLASSES)
        assert back.classes == rec.classes and len(back) == len(scene.labelled) > 0
        # Coordinates are written at float32 precision (DOTA tools' format).
        np.testing.assert_allclose(back.polygons, rec.polygons, atol=2e-3)
        np.testing.assert_array_equal(back.difficulty, rec.difficulty)
        assert back.gsd == scene.gsd


def test_first_image_of_each_split_is_smaller_than_a_tile():
    for split in ("train", "val", "test"):
        w, h = image_shape(image_rng(0, split, 0), 0, (700, 1400))
        assert 700 <= w <= 787 and 700 <= h <= 787
    sizes = [image_shape(image_rng(0, "train", i), i, (700, 1400)) for i in range(1, 40)]
    assert min(min(s) for s in sizes) >= 700 and max(max(s) for s in sizes) <= 1400
    assert max(max(s) for s in sizes) > 1200  # larger images give several 800 px windows


def test_class_subset_and_bad_arguments(tmp_path):
    summary = generate_synthetic_dataset(tmp_path, splits={"train": 2}, image_size=(400, 480), seed=2,
                                         classes=["ship", "harbor"])
    assert (tmp_path / "classes.txt").read_text() == "ship\nharbor\n"
    recs = read_dota_folder(tmp_path / "train/images", tmp_path / "train/labelTxt")
    assert {c for r in recs for c in r.classes} == {"ship", "harbor"}
    assert set(summary["splits"]["train"]["per_class"]) == {"ship", "harbor"}
    with pytest.raises(ValueError, match="unknown: \\['car'\\]"):
        generate_synthetic_dataset(tmp_path, splits={"train": 1}, classes=["ship", "car"])
    with pytest.raises(ValueError, match="image count"):
        generate_synthetic_dataset(tmp_path, splits={"train": -1})
    with pytest.raises(ValueError, match="min_side <= max_side"):
        generate_synthetic_dataset(tmp_path, splits={"train": 1}, image_size=(900, 800))
    with pytest.raises(ValueError, match="split name"):
        generate_synthetic_dataset(tmp_path, splits={"tr/ain": 1})


def test_config_classes_and_gsd_reach_the_generator_and_datasets_must_match(tmp_path):
    cfg = validate_config({"synthetic": {"seed": 1, "images": {"train": 2}, "min_side": 400, "max_side": 480,
                                         "classes": ["ship", "storage-tank"], "gsd_range": [0.1, 0.2]}})
    summary = generate_from_config(cfg["synthetic"], tmp_path)
    assert summary["classes"] == ["ship", "storage-tank"] and summary["gsd_range"] == [0.1, 0.2]
    assert all(0.1 <= f["gsd"] <= 0.2 for f in summary["splits"]["train"]["files"])
    recs = read_dota_folder(tmp_path / "train/images", tmp_path / "train/labelTxt")
    assert {c for r in recs for c in r.classes} <= {"ship", "storage-tank"}
    # the default dataset lists all eight classes: a subset generated under it is a config error
    problems = check_synthetic_classes(cfg)
    assert len(problems) == 1 and "datasets.synthetic.classes" in problems[0] and "storage-tank" in problems[0]
    cfg["datasets"]["synthetic"]["classes"] = ["ship", "storage-tank"]
    assert check_synthetic_classes(cfg) == []
    cfg["synthetic"]["gsd_range"] = [0.3, 0.1]
    assert "synthetic: gsd_range" in check_synthetic_classes(cfg)[0]
    # the generator's other argument checks also stop the workflow at DAG time, not in the job
    cfg["synthetic"].update(gsd_range=[0.1, 0.2], min_side=900, max_side=800)
    assert "min_side <= max_side" in check_synthetic_classes(cfg)[0]
    with pytest.raises(ConfigError, match="harbour"):
        validate_config({"synthetic": {"classes": ["harbour"]}})


# ---------------------------------------------------------------------------------- label geometry
def test_polygons_are_rectangles_inside_the_image(five_themes):
    _, _, records = five_themes
    for r in records:
        h, w = cv2.imread(str(r.image_path)).shape[:2]
        p = r.polygons.reshape(-1, 4, 2)
        assert (p[..., 0] >= 0).all() and (p[..., 0] <= w - 1).all()
        assert (p[..., 1] >= 0).all() and (p[..., 1] <= h - 1).all()
        e = np.roll(p, -1, axis=1) - p  # edges 0-1, 1-2, 2-3, 3-0
        lengths = np.linalg.norm(e, axis=2)
        assert (lengths >= 2 - 1e-3).all(), r.image_id
        cos = np.einsum("nkd,nkd->nk", e, np.roll(e, -1, axis=1)) / (lengths * np.roll(lengths, -1, axis=1))
        assert np.abs(cos).max() < 1e-3, r.image_id
        np.testing.assert_allclose(lengths[:, 0], lengths[:, 2], atol=2e-3)
        # Clockwise on screen (y down): TL, TR, BR, BL.
        cross = e[:, 0, 0] * e[:, 1, 1] - e[:, 0, 1] * e[:, 1, 0]
        assert (cross > 0).all()
        assert set(np.unique(r.difficulty)) <= {0, 1}
        small = np.maximum(lengths[:, 0], lengths[:, 1]) < 8
        np.testing.assert_array_equal(r.difficulty, small.astype(np.int64))
        # Tanks are circles, labelled axis-aligned as in DOTA.
        tanks = np.array(r.classes) == "storage-tank"
        np.testing.assert_allclose(e[tanks, 0, 1], 0.0, atol=1e-3)


def test_objects_do_not_overlap(five_themes):
    _, _, records = five_themes
    for r in records:
        polys = shapely.polygons(r.polygons.reshape(-1, 4, 2))
        tree = shapely.STRtree(polys)
        i, j = tree.query(polys, predicate="intersects")
        pairs = i < j
        i, j = i[pairs], j[pairs]
        if len(i):
            inter = shapely.area(shapely.intersection(polys[i], polys[j]))
            smaller = np.minimum(shapely.area(polys[i]), shapely.area(polys[j]))
            assert (inter / smaller).max() < 0.01, r.image_id


def test_objects_stand_on_the_right_ground(scenes):
    from mutdet_core.synthetic.layout import sample_points
    from mutdet_core.synthetic.terrain import LAND, PAVED, ROAD, WATER

    allowed = {"ship": {WATER}, "plane": {PAVED}, "storage-tank": {PAVED}, "tennis-court": {PAVED},
               "large-vehicle": {PAVED, ROAD}, "small-vehicle": {PAVED, ROAD, LAND}}
    seen = set()
    for scene in scenes.values():
        for o in scene.labelled:
            if o.label not in allowed:
                continue
            pts = np.round(sample_points(o.cx, o.cy, 0.9 * o.w, 0.9 * o.h, o.angle, 3)).astype(int)
            codes = set(scene.surface[pts[:, 1], pts[:, 0]].tolist())
            assert codes <= allowed[o.label], (o.label, codes)
            seen.add(o.label)
    assert seen == set(allowed)


# ------------------------------------------------------------------------------------------ pixels
def _inside_and_ring(obj, shape, ring_px):
    """Masks of an object's box and of a ring around it (box grown by ``ring_px`` minus the box)."""
    inside = np.zeros(shape, np.uint8)
    ring = np.zeros(shape, np.uint8)
    c = obj.corners()
    cv2.fillPoly(inside, [np.round(c * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    grown = SceneObject(obj.kind, obj.label, obj.cx, obj.cy, obj.w + 2 * ring_px, obj.h + 2 * ring_px, obj.angle)
    cv2.fillPoly(ring, [np.round(grown.corners() * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    return inside.astype(bool), ring.astype(bool) & ~inside.astype(bool)


def _footprint(obj, shape):
    patch = rasterize(obj, draw_sprite(obj, np.array([1.0, 0.0])), shape[1], shape[0])
    mask = np.zeros(shape, bool)
    mask[patch.y0:patch.y0 + patch.alpha.shape[0], patch.x0:patch.x0 + patch.alpha.shape[1]] = patch.alpha > 0.5
    return mask


def test_object_pixels_differ_from_their_surroundings(scenes):
    """A classical segmentation can only find objects that stand out. The mean colour inside each ship
    box differs from the water around it; for every class, the object's own pixels differ from the
    free ground right around its box."""
    diffs, ship_box = {}, []
    for scene in scenes.values():
        img = scene.image.astype(np.float32)
        occupied = np.zeros(img.shape[:2], bool)
        for o in scene.objects:
            occupied |= _inside_and_ring(o, img.shape[:2], 0)[0]
        for o in scene.labelled:
            if min(o.w, o.h) < 4 or o.label in ("bridge", "harbor"):
                continue  # bridges and piers are long: their surroundings are mostly other things
            inside, ring = _inside_and_ring(o, img.shape[:2], max(2.0, 0.15 * min(o.w, o.h)))
            ring &= ~occupied
            if ring.sum() < 10:
                continue
            background = img[ring].mean(0)
            diffs.setdefault(o.label, []).append(np.linalg.norm(img[_footprint(o, img.shape[:2])].mean(0) - background))
            if o.label == "ship":
                ship_box.append(np.linalg.norm(img[inside].mean(0) - background))
    assert {"ship", "plane", "small-vehicle", "large-vehicle", "storage-tank", "tennis-court"} <= set(diffs)
    ship_box = np.array(ship_box)
    assert np.median(ship_box) > 60 and (ship_box > 20).mean() > 0.9
    for label, d in diffs.items():
        assert np.median(d) > 15 and np.mean(np.array(d) > 8) > 0.8, (label, np.median(d))


def _classical_segments(image: np.ndarray) -> np.ndarray:
    """Oriented boxes ``(K, 4, 2)`` of a training-free segmentation: pixels brighter than, or of another
    hue than, their median background at three scales (shadows are darker with the same hue, so they
    are left out), connected components, ``minAreaRect``."""
    img = image.astype(np.int16)
    h, w = image.shape[:2]
    boxes = []
    for down, k in ((1, 15), (2, 21), (4, 25), (8, 31)):  # median windows of 15, 42, 100 and 248 px
        small = cv2.resize(image, (w // down, h // down), interpolation=cv2.INTER_AREA) if down > 1 else image
        bg = cv2.resize(cv2.medianBlur(small, k), (w, h), interpolation=cv2.INTER_LINEAR).astype(np.int16)
        chroma = np.abs((img - img.mean(2, keepdims=True)) - (bg - bg.mean(2, keepdims=True))).sum(2)
        mask = (((img - bg).sum(2) > 40) | (chroma > 30)).astype(np.uint8)
        n, lab, stats, _ = cv2.connectedComponentsWithStats(mask)
        for j in np.flatnonzero(stats[:, 4] >= 6)[1:] if stats[0, 4] >= 6 else np.flatnonzero(stats[:, 4] >= 6):
            x, y, bw, bh = stats[j, :4]
            ys, xs = np.nonzero(lab[y:y + bh, x:x + bw] == j)
            boxes.append(cv2.boxPoints(cv2.minAreaRect(np.stack([xs + x, ys + y], 1).astype(np.float32))))
    return np.array(boxes)


def test_a_classical_segmentation_finds_the_objects(scenes):
    """Pseudo-labels without any model: most objects come out of a local-contrast segmentation as their
    own segment (rotated IoU >= 0.5 with the label). Not planes on a bright apron (the apron wins at
    large scales), nor bridges (their deck continues as a road), nor dark cars: as with real imagery."""
    best = {}
    for scene in scenes.values():
        segs = shapely.polygons(_classical_segments(scene.image))
        tree = shapely.STRtree(segs)
        for o in scene.labelled:
            gt = shapely.Polygon(o.corners())
            cand = segs[tree.query(gt)]
            inter = shapely.area(shapely.intersection(cand, gt))
            iou = inter / (shapely.area(cand) + gt.area - inter) if len(cand) else np.zeros(1)
            best.setdefault(o.label, []).append(float(np.max(iou, initial=0.0)))
    found = {label: np.mean(np.array(v) >= 0.5) for label, v in best.items()}
    pooled = np.concatenate([np.array(best[c]) for c in ("plane", "large-vehicle", "ship", "storage-tank",
                                                         "tennis-court") if c in best])
    assert np.mean(pooled >= 0.5) > 0.6, found
    assert found["large-vehicle"] > 0.6 and found["ship"] > 0.5 and found["tennis-court"] > 0.6, found


def _render_alone(obj, size=400):
    patch = rasterize(obj, draw_sprite(obj, np.array([0.6, -0.8])), size, size)
    mask = np.zeros((size, size), np.float32)
    mask[patch.y0:patch.y0 + patch.alpha.shape[0], patch.x0:patch.x0 + patch.alpha.shape[1]] = patch.alpha
    return mask > 0.5


@pytest.mark.parametrize("kind,w,h,style", [
    ("small-vehicle", 9.0, 21.0, {"type": "car"}),
    ("large-vehicle", 12.0, 70.0, {"type": "truck"}),
    ("storage-tank", 61.0, 61.0, {"roof": "floating"}),
    ("tennis-court", 52.0, 110.0, {}),
    ("ship", 30.0, 160.0, {"type": "cargo"}),
    ("harbor", 20.0, 180.0, {}),
    ("bridge", 40.0, 210.0, {}),
])
@pytest.mark.parametrize("angle_deg", [0.0, 17.0, 63.5, 131.0])
def test_boxes_are_tight_min_area_rects_of_the_rendered_object(kind, w, h, style, angle_deg):
    obj = SceneObject(kind, kind, 200.3, 199.6, w, h, np.deg2rad(angle_deg), style={"ppm": 3.0, **style})
    ys, xs = np.nonzero(_render_alone(obj))
    (cx, cy), (rw, rh), _ = cv2.minAreaRect(np.stack([xs, ys], 1).astype(np.float32))
    # Pixel centres of the mask lie half a pixel inside the edges: the rect of the centres is 1 px smaller.
    assert sorted([rw + 1, rh + 1]) == pytest.approx(sorted([w, h]), abs=2.0)
    assert (cx, cy) == pytest.approx((obj.cx, obj.cy), abs=1.0)
    if abs(w - h) > 5:
        rect = cv2.boxPoints(((cx, cy), (rw, rh), _))
        e1, e2 = rect[1] - rect[0], rect[2] - rect[1]
        e = e1 if np.linalg.norm(e1) > np.linalg.norm(e2) else e2
        heading = np.array([np.sin(obj.angle), -np.cos(obj.angle)])
        assert abs(np.dot(e / np.linalg.norm(e), heading)) > np.cos(np.deg2rad(2.5))


@pytest.mark.parametrize("angle_deg", [0.0, 33.0, 250.0])
def test_plane_touches_all_four_sides_of_its_box(angle_deg):
    """A plane's hull is a cross, whose minimum-area rectangle may be diagonal; the label is the box in
    the plane's own frame: nose, tail and both wing tips reach its sides."""
    obj = SceneObject("plane", "plane", 200.0, 200.0, 140.0, 150.0, np.deg2rad(angle_deg),
                      style={"type": "jet", "engines": 2, "ppm": 3.0})
    ys, xs = np.nonzero(_render_alone(obj))
    c, s = np.cos(obj.angle), np.sin(obj.angle)
    lx = c * (xs - obj.cx) + s * (ys - obj.cy)
    ly = -s * (xs - obj.cx) + c * (ys - obj.cy)
    assert (lx.min(), lx.max()) == pytest.approx((-obj.w / 2 + 0.5, obj.w / 2 - 0.5), abs=1.5)
    assert (ly.min(), ly.max()) == pytest.approx((-obj.h / 2 + 0.5, obj.h / 2 - 0.5), abs=1.5)


# --------------------------------------------------------------------------------- realism (real DOTA)
def _metric_sizes(records, label):
    out = []
    for r in records:
        if r.gsd is None or not 0.05 < r.gsd < 0.6:
            continue  # DOTA has a few bogus gsd headers (P0168: 2.7e-6, P1234: 1.0)
        p = r.polygons[np.array(r.classes) == label].reshape(-1, 4, 2)
        e1, e2 = np.linalg.norm(p[:, 1] - p[:, 0], axis=1), np.linalg.norm(p[:, 2] - p[:, 1], axis=1)
        out.append(np.stack([np.maximum(e1, e2), np.minimum(e1, e2)], 1) * r.gsd)
    return np.concatenate(out) if out else np.zeros((0, 2))


def test_metric_object_sizes_match_real_dota(shared_data, five_themes):
    """Cars, trucks, tennis courts and storage tanks have the sizes in metres that the real DOTA labels
    (with their gsd headers) give them."""
    real = []
    for sub in ("dota_sample", "dota_dense"):
        for lbl in sorted((shared_data / sub / "labelTxt").glob("P????.txt")):
            real.append(read_dota_txt(lbl))
    _, _, synth = five_themes
    for label, tol in (("small-vehicle", 0.2), ("large-vehicle", 0.45), ("tennis-court", 0.1)):
        r, s = _metric_sizes(real, label), _metric_sizes(synth, label)
        assert len(r) >= 4 and len(s) >= 1, label
        for k in (0, 1):  # length and width medians
            assert np.median(s[:, k]) == pytest.approx(np.median(r[:, k]), rel=tol), (label, k)
        # Every synthetic object is within the real range, give or take 25 %.
        assert s[:, 0].min() > 0.75 * r[:, 0].min() and s[:, 0].max() < 1.25 * r[:, 0].max(), label


# ----------------------------------------------------------------------------------------- preview
def test_scene_grid_draws_class_coloured_boxes(five_themes, shared_data, tmp_path):
    _, _, records = five_themes
    grid = draw_scene_grid(records[:4], ncols=2, cell=300)
    assert grid.dtype == np.uint8 and grid.shape[1] == 2 * 306 + 6 and grid.shape[0] > 2 * 250
    planes = (grid[..., 0] > 240) & (grid[..., 1] < 90) & (grid[..., 2] < 90)  # plane boxes: (255, 60, 60)
    assert planes.sum() > 50
    real = read_dota_txt(shared_data / "dota_sample/labelTxt/P1088.txt",
                         shared_data / "dota_sample/images/P1088.png")
    one = draw_scene_grid([real], ncols=1, cell=400, legend=False)
    assert one.shape == (412, 412, 3)
    # A legend of all 15 DOTA classes wraps onto several lines instead of running off the picture.
    many = read_dota_txt(shared_data / "dota_sample/labelTxt/P0770.txt",
                         shared_data / "dota_sample/images/P0770.png").subset(np.arange(15))
    many.classes = list(DOTA_V1.names)
    wide = draw_scene_grid([many], ncols=1, cell=200)
    assert wide.shape[1] == 212 and wide.shape[0] > 212 + 3 * 24
    with pytest.raises(ValueError, match="no records"):
        draw_scene_grid([])
