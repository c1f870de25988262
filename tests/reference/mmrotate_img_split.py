"""Independent, straightforward re-statement of mmrotate's ``tools/data/dota/split/img_split.py``
(v0.3.4 / 1.x, identical), used only as the test oracle for our tiler.

It follows the original step by step on purpose: per-image loops, one shapely ``Polygon`` per object
and window, ``cv2.imread`` (BGR), float32 polygons, ``str()`` of float32 values in the annfiles, the
window loop with ``ceil`` and the inward shift, the 0.6 image-rate filter with its 0.01 fallback, IoF
with an HBB pre-filter, difficulty 2 for truncated objects, BGR padding. Nothing here is shared with
``mutdet_core``; if the two disagree, one of them is wrong.
"""
import itertools
import os
from math import ceil

import cv2
import numpy as np
import shapely.geometry as shgeo
from PIL import Image


def load_dota_txt(txtfile):
    gsd, bboxes, labels, diffs = None, [], [], []
    if txtfile is not None and os.path.isfile(txtfile):
        with open(txtfile) as f:
            for line in f:
                if line.startswith("gsd"):
                    try:
                        gsd = float(line.split(":")[-1])
                    except ValueError:
                        gsd = None
                    continue
                items = line.split(" ")
                if len(items) >= 9:
                    bboxes.append([float(i) for i in items[:8]])
                    labels.append(items[8])
                    diffs.append(int(items[9]) if len(items) == 10 else 0)
    bboxes = np.array(bboxes, dtype=np.float32) if bboxes else np.zeros((0, 8), dtype=np.float32)
    diffs = np.array(diffs, dtype=np.int64) if diffs else np.zeros((0,), dtype=np.int64)
    return dict(gsd=gsd, ann=dict(bboxes=bboxes, labels=labels, diffs=diffs))


def get_sliding_window(width, height, sizes, gaps, img_rate_thr):
    eps = 0.01
    windows = []
    for size, gap in zip(sizes, gaps):
        step = size - gap
        x_num = 1 if width <= size else ceil((width - size) / step + 1)
        x_start = [step * i for i in range(x_num)]
        if len(x_start) > 1 and x_start[-1] + size > width:
            x_start[-1] = width - size
        y_num = 1 if height <= size else ceil((height - size) / step + 1)
        y_start = [step * i for i in range(y_num)]
        if len(y_start) > 1 and y_start[-1] + size > height:
            y_start[-1] = height - size
        start = np.array(list(itertools.product(x_start, y_start)), dtype=np.int64)
        windows.append(np.concatenate([start, start + size], axis=1))
    windows = np.concatenate(windows, axis=0)
    img_in_wins = windows.copy()
    img_in_wins[:, 0::2] = np.clip(img_in_wins[:, 0::2], 0, width)
    img_in_wins[:, 1::2] = np.clip(img_in_wins[:, 1::2], 0, height)
    img_areas = (img_in_wins[:, 2] - img_in_wins[:, 0]) * (img_in_wins[:, 3] - img_in_wins[:, 1])
    win_areas = (windows[:, 2] - windows[:, 0]) * (windows[:, 3] - windows[:, 1])
    img_rates = img_areas / win_areas
    if not (img_rates > img_rate_thr).any():
        max_rate = img_rates.max()
        img_rates[abs(img_rates - max_rate) < eps] = 1
    return windows[img_rates > img_rate_thr]


def bbox_overlaps_iof(bboxes1, bboxes2, eps=1e-6):
    rows, cols = bboxes1.shape[0], bboxes2.shape[0]
    if rows * cols == 0:
        return np.zeros((rows, cols), dtype=np.float32)
    polys = bboxes1.reshape(rows, 4, 2)
    hbboxes1 = np.concatenate([polys.min(axis=-2), polys.max(axis=-2)], axis=-1)[:, None, :]
    lt = np.maximum(hbboxes1[..., :2], bboxes2[..., :2])
    rb = np.minimum(hbboxes1[..., 2:], bboxes2[..., 2:])
    wh = np.clip(rb - lt, 0, np.inf)
    h_overlaps = wh[..., 0] * wh[..., 1]
    l, t, r, b = [bboxes2[..., i] for i in range(4)]
    polys2 = np.stack([l, t, r, t, r, b, l, b], axis=-1)
    sg_polys1 = [shgeo.Polygon(p) for p in bboxes1.reshape(rows, -1, 2)]
    sg_polys2 = [shgeo.Polygon(p) for p in polys2.reshape(cols, -1, 2)]
    overlaps = np.zeros(h_overlaps.shape)
    for p in zip(*np.nonzero(h_overlaps)):
        overlaps[p] = sg_polys1[p[0]].intersection(sg_polys2[p[-1]]).area
    unions = np.array([p.area for p in sg_polys1], dtype=np.float32)[..., None]
    unions = np.clip(unions, eps, np.inf)
    return overlaps / unions


def split_image(img_path, txt_path, image_id, save_dir, sizes=(800,), gaps=(200,), img_rate_thr=0.6,
                iof_thr=0.7, padding_value=(104, 116, 124)):
    """Write ``save_dir/images/<patch>.png`` and ``save_dir/annfiles/<patch>.txt`` for one image."""
    width, height = Image.open(img_path).size
    info = load_dota_txt(txt_path)
    windows = get_sliding_window(width, height, sizes, gaps, img_rate_thr)
    iofs = bbox_overlaps_iof(info["ann"]["bboxes"], windows)
    img = cv2.imread(img_path)
    os.makedirs(os.path.join(save_dir, "images"), exist_ok=True)
    os.makedirs(os.path.join(save_dir, "annfiles"), exist_ok=True)
    names = []
    for i, window in enumerate(windows):
        pos = np.nonzero(iofs[:, i] >= iof_thr)[0].tolist()
        bboxes = info["ann"]["bboxes"][pos]
        labels = [info["ann"]["labels"][j] for j in pos]
        diffs = info["ann"]["diffs"][pos]
        trunc = iofs[pos, i] < 1
        x_start, y_start, x_stop, y_stop = window.tolist()
        name = f"{image_id}__{x_stop - x_start}__{x_start}___{y_start}"
        bboxes = bboxes + np.array([-x_start, -y_start] * 4, dtype=np.float32)
        patch = img[y_start:y_stop, x_start:x_stop]
        h, w = y_stop - y_start, x_stop - x_start
        if h > patch.shape[0] or w > patch.shape[1]:
            padded = np.empty((h, w, patch.shape[-1]), dtype=np.uint8)
            padded[...] = padding_value
            padded[:patch.shape[0], :patch.shape[1], ...] = patch
            patch = padded
        cv2.imwrite(os.path.join(save_dir, "images", name + ".png"), patch)
        with open(os.path.join(save_dir, "annfiles", name + ".txt"), "w") as f:
            for k in range(len(bboxes)):
                line = " ".join(map(str, bboxes[k]))
                d = str(diffs[k]) if not trunc[k] else "2"
                f.write(line + " " + labels[k] + " " + d + "\n")
        names.append(name)
    return names
