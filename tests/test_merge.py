"""Patch merging: the devkit's ResultMerge on its own example, tile-name parsing, the MutDet defaults,
Task1 writing and zipping, bad input, and the merge CLI handler."""
from __future__ import annotations

import argparse
import json
import zipfile

import numpy as np
import pytest
from test_evaluation_reference import ref_iou_shapely, ref_result_merge

from mutdet_core.datasets import DOTA_V1, LabelFormatError, read_task1_folder
from mutdet_core.evaluation.cli import add_merge_arguments, merge_cli
from mutdet_core.evaluation.merge import (DEVKIT_RESULTMERGE, MergeParams, merge_class, merge_detections,
                                          merge_task1_folder, tile_origin)


def _split(shared_data):
    root = shared_data / "dota_sample" / "example_split"
    return root / "dota_dets", root / "merged_dets"


def _lines(path):
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def test_devkit_resultmerge_reproduces_example_merged_dets_line_by_line(shared_data):
    tiles, merged = _split(shared_data)
    out = merge_detections(read_task1_folder(tiles), DOTA_V1.names, DEVKIT_RESULTMERGE)
    for c in DOTA_V1.names:
        want = _lines(merged / f"Task1_{c}.txt")
        got = out[c]
        assert len(got) == len(want), c
        for (image, score, poly), line in zip(got, want):
            # same image, score and coordinates, in the same order (order = NMS order incl. tied scores)
            assert image == line[0] and score == float(line[1]), c
            np.testing.assert_array_equal(poly, np.array(line[2:], dtype=float))


def test_devkit_merge_equals_reference_transcription_with_shapely_iou(shared_data):
    tiles, merged = _split(shared_data)
    ours = merge_detections(read_task1_folder(tiles), DOTA_V1.names, DEVKIT_RESULTMERGE)
    for c in ("plane", "storage-tank", "tennis-court"):
        ref = ref_result_merge((tiles / f"Task1_{c}.txt").read_text().splitlines(), 0.3, iou=ref_iou_shapely)
        assert [(i, s) for i, s, _ in ours[c]] == [(i, s) for i, s, _ in ref]


def _match_by_iou(a, b):
    """Greedy one-to-one matching of two detection lists of one image by IoU; returns the IoUs."""
    used, ious = set(), []
    for _, sa, pa in a:
        best = max(((ref_iou_shapely(pa, pb), k) for k, (_, sb, pb) in enumerate(b) if k not in used and sb == sa),
                   default=(0.0, None))
        if best[1] is not None:
            used.add(best[1])
        ious.append(best[0])
    return np.array(ious)


def test_merged_files_match_example_by_counts_and_iou(shared_data, tmp_path):
    tiles, merged = _split(shared_data)
    summary = merge_task1_folder(tiles, tmp_path / "merged", DOTA_V1.names, DEVKIT_RESULTMERGE, make_zip=True)
    for c in DOTA_V1.names:
        ours = read_task1_folder(tmp_path / "merged")[c]
        want = read_task1_folder(merged)[c]
        assert summary["num_merged"][c] == len(want) == len(ours), c
        for image in {d[0] for d in want}:
            ious = _match_by_iou([d for d in ours if d[0] == image], [d for d in want if d[0] == image])
            assert (ious > 0.999).all(), (c, image)
    assert sum(summary["num_tile_dets"].values()) == 1632
    with zipfile.ZipFile(summary["zip"]) as zf:
        assert sorted(zf.namelist()) == sorted(f"Task1_{c}.txt" for c in DOTA_V1.names)


def test_mutdet_defaults_filter_and_suppress(shared_data):
    tiles, _ = _split(shared_data)
    raw = read_task1_folder(tiles)
    devkit = merge_detections(raw, DOTA_V1.names, MergeParams(score_thr=None, patch_nms_iou=None, merge_nms_iou=0.1))
    mutdet = merge_detections(raw, DOTA_V1.names)  # score >= 0.05, tile NMS 0.5, image NMS 0.1
    total = lambda d: sum(len(v) for v in d.values())  # noqa: E731
    assert total(mutdet) <= total(devkit) < total(merge_detections(raw, DOTA_V1.names, DEVKIT_RESULTMERGE))
    assert all(s >= 0.05 for v in mutdet.values() for _, s, _ in v)


def _square(x, y, size=10.0):
    return np.array([x, y, x + size, y, x + size, y + size, x, y + size])


def test_tile_offsets_rates_and_cross_tile_duplicates():
    # the same object seen by two overlapping mmrotate tiles (window 800, stride 600) becomes one detection
    tiles = ["P1__800__0___0", "P1__800__600___0", "P1__800__600___0", "P1__800__0___0"]
    polys = [_square(700, 10), _square(100, 10), _square(300, 300), _square(50, 50)]
    out = merge_class(tiles, [0.9, 0.8, 0.03, 0.6], polys)
    assert [(i, s) for i, s, _ in out] == [("P1", 0.9), ("P1", 0.6)]  # duplicate suppressed, 0.03 filtered
    np.testing.assert_array_equal(out[0][2], _square(700, 10))
    # devkit naming with a rate: (x + offset) / rate
    out = merge_class(["P2__0.5__100___200"], [0.7], [_square(0, 0)], MergeParams(naming="auto"))
    np.testing.assert_allclose(out[0][2], (_square(0, 0) + np.array([100, 200] * 4)) / 0.5)


def test_tile_origin_naming():
    assert tile_origin("P0168__1__600___0") == ("P0168", 600.0, 0.0, 1.0)
    assert tile_origin("P0168__1.0__0___824") == ("P0168", 0.0, 824.0, 1.0)
    assert tile_origin("P0168__0.5__0___0") == ("P0168", 0.0, 0.0, 0.5)
    assert tile_origin("P0001__1024__0___824") == ("P0001", 0.0, 824.0, 1.0)
    assert tile_origin("my__image__800__200___400") == ("my__image", 200.0, 400.0, 1.0)
    assert tile_origin("P0001__2__0___0", "mmrotate")[3] == 1.0
    assert tile_origin("P0001__800__0___0", "devkit")[3] == 800.0
    with pytest.raises(ValueError, match="not a tile name"):
        tile_origin("P0001")
    with pytest.raises(ValueError, match="naming"):
        MergeParams(naming="bbox")


def test_merge_bad_input(tmp_path):
    src = tmp_path / "tiles"
    src.mkdir()
    with pytest.raises(ValueError, match="nothing to merge"):
        merge_task1_folder(src, tmp_path / "out", DOTA_V1.names)
    (src / "Task1_ship.txt").write_text("P1__800__0___0 0.9 0 0 10 0 10 10 0 10\nP1 0.8 0 0 10 0 10 10 0 10\n")
    with pytest.raises(LabelFormatError, match=r"Task1_ship\.txt:2: .*not a tile name"):
        merge_task1_folder(src, tmp_path / "out", DOTA_V1.names)
    (src / "Task1_ship.txt").write_text("P1__800__0___0 0.9 0 0 10 0 10 10 0\n")
    with pytest.raises(LabelFormatError, match=r"Task1_ship\.txt:1: expected"):
        merge_task1_folder(src, tmp_path / "out", DOTA_V1.names)
    (src / "Task1_ship.txt").write_text("P1__800__0___0 0.9 0 0 10 0 10 10 0 10\n")
    (src / "Task1_boat.txt").write_text("")
    with pytest.raises(LabelFormatError, match="unknown class 'boat'"):
        merge_task1_folder(src, tmp_path / "out", DOTA_V1.names)
    with pytest.raises(ValueError, match="outside"):
        MergeParams(merge_nms_iou=0.0)


def test_merge_writes_every_class_file(tmp_path):
    src = tmp_path / "tiles"
    src.mkdir()
    (src / "Task1_ship.txt").write_text("P1__800__600___0 0.9 0 0 10 0 10 10 0 10\n")
    summary = merge_task1_folder(src, tmp_path / "out", DOTA_V1.names)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"Task1_{c}.txt" for c in DOTA_V1.names)
    assert _lines(tmp_path / "out" / "Task1_ship.txt")[0][0] == "P1"
    assert float(_lines(tmp_path / "out" / "Task1_ship.txt")[0][2]) == 600.0
    assert summary["zip"] is None and summary["num_merged"]["plane"] == 0


def test_merge_cli_with_evaluation(shared_data, tmp_path):
    tiles, merged = _split(shared_data)
    parser = argparse.ArgumentParser()
    add_merge_arguments(parser)
    args = parser.parse_args(["--tile-dets", str(tiles), "--out", str(tmp_path / "merged"), "--zip",
                              "--devkit-resultmerge", "--labels", str(shared_data / "dota_sample" / "labelTxt"),
                              "--image-ids", str(shared_data / "dota_sample" / "images.txt"),
                              "--iou-thresholds", "0.5"])
    assert merge_cli(args) == 0
    assert (tmp_path / "merged.zip").is_file()
    result = json.loads((tmp_path / "merged_results.json").read_text())
    assert result["per_class"]["plane"]["AP50"] == pytest.approx(0.9796324430286696, abs=1e-12)
    assert (tmp_path / "merged_results.md").is_file()
    for c in DOTA_V1.names:  # the written files carry the devkit's merged detections
        assert len(_lines(tmp_path / "merged" / f"Task1_{c}.txt")) == len(_lines(merged / f"Task1_{c}.txt"))
