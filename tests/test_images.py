"""Image loading policy on the real fixture images and on converted / broken copies of them."""
from __future__ import annotations

import logging
import struct

import cv2
import numpy as np
import pytest

from mutdet_core.datasets import ImageReadError, image_size, load_image_rgb

SIZES = {  # (width, height) from ../shared/data/README.md
    "dota_sample/images/P0075.png": (451, 839), "dota_sample/images/P0168.png": (2304, 1792),
    "dota_sample/images/P0706.png": (1111, 1182), "dota_sample/images/P0770.png": (1610, 1358),
    "dota_sample/images/P1088.png": (1599, 1903), "dota_sample/images/P1888.png": (712, 557),
    "dota_dense/images/P0003.png": (1147, 1023), "dota_dense/images/P0004.png": (824, 1464),
    "dota_dense/images/P0005.png": (884, 977), "dota_dense/images/P1478__1__853___962.png": (1024, 1024),
    "dior_r_sample/JPEGImage/00001.jpg": (800, 800),
}


@pytest.fixture
def rgb8(shared_data):
    """P0075 (451 x 839) as RGB uint8, read independently of the module under test."""
    return cv2.imread(str(shared_data / "dota_sample/images/P0075.png"))[..., ::-1].copy()


def write_minisblack_tiff(path, arr):
    """Minimal uncompressed TIFF tagged MinIsBlack with ``C-1`` extra samples (what GDAL writes for
    multispectral data), 8- or 16-bit, ``arr`` (H, W, C)."""
    h, w, c = arr.shape
    bits = arr.dtype.itemsize * 8
    data = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"))).tobytes()
    ifd_off, n = 8 + len(data), 9
    arrays_off = ifd_off + 2 + 12 * n + 4
    bps = struct.pack("<" + "H" * c, *([bits] * c))
    extra = struct.pack("<" + "H" * (c - 1), *([0] * (c - 1)))

    def inline_or_offset(values, offset):
        return values.ljust(4, b"\0") if len(values) <= 4 else struct.pack("<I", offset)

    entries = [(256, 3, 1, struct.pack("<HH", w, 0)), (257, 3, 1, struct.pack("<HH", h, 0)),
               (258, 3, c, inline_or_offset(bps, arrays_off)), (259, 3, 1, struct.pack("<HH", 1, 0)),
               (262, 3, 1, struct.pack("<HH", 1, 0)), (273, 4, 1, struct.pack("<I", 8)),
               (277, 3, 1, struct.pack("<HH", c, 0)), (279, 4, 1, struct.pack("<I", len(data))),
               (338, 3, c - 1, inline_or_offset(extra, arrays_off + len(bps)))]
    out = b"II*\0" + struct.pack("<I", ifd_off) + data + struct.pack("<H", n)
    out += b"".join(struct.pack("<HHI", t, ty, cnt) + v for t, ty, cnt, v in entries) + struct.pack("<I", 0)
    path.write_bytes(out + bps + extra)
    return path


# ------------------------------------------------------------------------------------- normal 8-bit RGB
@pytest.mark.parametrize("rel", sorted(SIZES))
def test_real_images_match_cv2_imread(shared_data, rel):
    path = shared_data / rel
    notes = []
    image = load_image_rgb(path, log=notes.append)
    assert image.dtype == np.uint8 and image.flags.c_contiguous
    assert image.shape == (SIZES[rel][1], SIZES[rel][0], 3)
    np.testing.assert_array_equal(image, cv2.imread(str(path))[..., ::-1])  # mmrotate's split pixels
    assert notes == []
    assert image_size(path) == SIZES[rel]


def test_exif_orientation_like_cv2(tmp_path, rgb8):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    colour, grey = tmp_path / "o6.jpg", tmp_path / "o6g.jpg"
    Image.fromarray(rgb8[:100, :60]).save(colour, exif=exif.tobytes(), quality=95)
    Image.fromarray(rgb8[:100, :60, 1]).save(grey, exif=exif.tobytes(), quality=95)
    image = load_image_rgb(colour)
    assert image.shape == (60, 100, 3) and image_size(colour) == (100, 60)
    np.testing.assert_array_equal(image, cv2.imread(str(colour))[..., ::-1])
    grey_image = load_image_rgb(grey, log=[].append)
    np.testing.assert_array_equal(grey_image, np.repeat(cv2.imread(str(grey), cv2.IMREAD_GRAYSCALE)[..., None], 3, 2))


def test_jpeg_with_trailing_bytes_is_not_truncated(tmp_path, shared_data):
    path = tmp_path / "trail.jpg"
    path.write_bytes((shared_data / "dior_r_sample/JPEGImage/00001.jpg").read_bytes() + b"\0" * 4096)
    np.testing.assert_array_equal(load_image_rgb(path), cv2.imread(str(path))[..., ::-1])


# ------------------------------------------------------------------------------------- broken files
def test_truncated_png(tmp_path, shared_data):
    data = (shared_data / "dota_sample/images/P0075.png").read_bytes()
    path = tmp_path / "half.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"half.png: truncated PNG"):
        load_image_rgb(path)


def test_truncated_jpeg_that_opencv_would_decode(tmp_path, shared_data):
    data = (shared_data / "dior_r_sample/JPEGImage/00001.jpg").read_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) * 2 // 3])
    assert cv2.imread(str(path)) is not None  # OpenCV fills the missing rows with grey: hence the check
    with pytest.raises(ImageReadError, match=r"half.jpg: truncated JPEG"):
        load_image_rgb(path)


def test_unreadable_files(tmp_path):
    garbage = tmp_path / "noise.png"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(ImageReadError, match=r"noise.png: not a readable image"):
        load_image_rgb(garbage)
    with pytest.raises(ImageReadError, match=r"missing.png: cannot read file"):
        load_image_rgb(tmp_path / "missing.png")
    text = tmp_path / "labels.txt"
    text.write_text("1 2 3 4 5 6 7 8 plane 0\n")
    with pytest.raises(ImageReadError, match="labels.txt"):
        load_image_rgb(text)
    with pytest.raises(ImageReadError, match="labels.txt: not a readable image"):
        image_size(text)
    with pytest.raises(ImageReadError, match="no such file"):
        image_size(tmp_path / "missing.png")
    assert issubclass(ImageReadError, ValueError)


# ------------------------------------------------------------------------------------- band policy
def test_grayscale_replicated(tmp_path, rgb8):
    path = tmp_path / "grey.png"
    cv2.imwrite(str(path), rgb8[..., 1])
    notes = []
    image = load_image_rgb(path, log=notes.append)
    assert image.shape == (839, 451, 3)
    for c in range(3):
        np.testing.assert_array_equal(image[..., c], rgb8[..., 1])
    assert len(notes) == 1 and "grayscale" in notes[0] and "grey.png" in notes[0]


def test_rgba_png_keeps_rgb(tmp_path, rgb8):
    alpha = np.random.default_rng(1).integers(0, 256, rgb8.shape[:2], dtype=np.uint8)
    path = tmp_path / "rgba.png"
    cv2.imwrite(str(path), np.dstack([rgb8[..., ::-1], alpha]))  # OpenCV writes BGRA
    notes = []
    np.testing.assert_array_equal(load_image_rgb(path, log=notes.append), rgb8)
    assert len(notes) == 1 and "4 bands" in notes[0]


def test_rgb_nir_tiff_keeps_first_three_bands(tmp_path, rgb8):
    nir = np.full(rgb8.shape[:2], 200, np.uint8)
    path = tmp_path / "rgbn.tif"
    assert cv2.imwrite(str(path), np.dstack([rgb8[..., ::-1], nir]))  # file bands R, G, B, NIR
    notes = []
    np.testing.assert_array_equal(load_image_rgb(path, log=notes.append), rgb8)
    assert "dropped band 4" in notes[0]
    assert image_size(path) == (451, 839)


def test_minisblack_multiband_tiff_refused(tmp_path, rgb8):
    path = write_minisblack_tiff(tmp_path / "ms4.tif", np.dstack([rgb8[:20, :30], rgb8[:20, :30, 0]]))
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).ndim == 2  # what OpenCV alone would give
    with pytest.raises(ImageReadError, match=r"ms4.tif: TIFF has 4 bands but OpenCV decodes 1.*PHOTOMETRIC=RGB"):
        load_image_rgb(path)


@pytest.mark.parametrize("bands", [2, 5])
def test_other_band_counts_refused(tmp_path, bands):
    arr = np.random.default_rng(bands).integers(0, 256, (12, 9, bands), dtype=np.uint8)
    path = write_minisblack_tiff(tmp_path / f"b{bands}.tif", arr)
    with pytest.raises(ImageReadError, match=rf"b{bands}.tif: {bands} bands; only 1"):
        load_image_rgb(path)


def test_single_band_hand_written_tiff_reads_as_grey(tmp_path):
    arr = np.arange(12 * 9, dtype=np.uint8).reshape(12, 9, 1)
    path = write_minisblack_tiff(tmp_path / "b1.tif", arr)
    np.testing.assert_array_equal(load_image_rgb(path, log=[].append), np.repeat(arr, 3, axis=2))


# ------------------------------------------------------------------------------------- bit depth
def test_percentile_stretch_hand_checked(tmp_path):
    values = np.arange(1, 1001, dtype=np.uint16).reshape(25, 40)
    padded = np.pad(values, 2)  # a no-data border of zeros, left out of the statistics
    path = tmp_path / "g16.png"
    cv2.imwrite(str(path), padded)
    notes = []
    image = load_image_rgb(path, log=notes.append)
    assert image.shape == (29, 44, 3) and image.dtype == np.uint8
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 0] == image[..., 2]).all()
    out = image[2:-2, 2:-2, 0]
    # np.percentile of 1..1000: p2 = 1 + 0.02*999 = 20.98, p98 = 980.02; 500 -> 479.02*255/959.04 = 127.37
    assert out[values == 500].item() == 127
    assert out[values == 24].item() == 1 and out[values == 21].item() == 0 and out[values == 1].item() == 0
    assert out[values == 981].item() == 255 and out[values == 1000].item() == 255
    assert (image[:2] == 0).all() and (image[:, :2] == 0).all()
    assert any("grayscale" in n for n in notes) and any("[20.98, 980.02]" in n for n in notes)


def test_ten_bit_data_in_16_bit_png(tmp_path, rgb8):
    path = tmp_path / "rgb16.png"
    cv2.imwrite(str(path), rgb8[..., ::-1].astype(np.uint16) * 4)  # 10-bit radiometry, like GF-2
    shifted = load_image_rgb(path, log=[].append, high_bit_depth="shift")
    np.testing.assert_array_equal(shifted, cv2.imread(str(path))[..., ::-1])  # cv2.imread's >> 8
    assert shifted.max() <= 3  # what the percentile default avoids: an almost black image
    notes = []
    stretched = load_image_rgb(path, log=notes.append)
    assert stretched.min() == 0 and stretched.max() == 255
    for c in range(3):  # a linear stretch with 2 % tails clipped keeps the picture
        assert np.corrcoef(stretched[..., c].ravel(), rgb8[..., c].ravel())[0, 1] > 0.97
    assert len(notes) == 1 and "uint16" in notes[0] and "stretched" in notes[0]


def test_shift_matches_cv2_on_full_range_16_bit(tmp_path):
    x = np.random.default_rng(2).integers(0, 65536, (40, 30, 3), dtype=np.uint16)
    path = tmp_path / "full16.png"
    cv2.imwrite(str(path), x)
    np.testing.assert_array_equal(load_image_rgb(path, log=[].append, high_bit_depth="shift"),
                                  cv2.imread(str(path))[..., ::-1])


def test_16_bit_rgb_nir_ignores_nir_statistics(tmp_path, rgb8):
    rgb16 = rgb8[..., ::-1].astype(np.uint16) * 16
    rng = np.random.default_rng(3)
    four, three = tmp_path / "rgbn16.tif", tmp_path / "rgb16.tif"
    cv2.imwrite(str(four), np.dstack([rgb16, rng.integers(0, 65536, rgb8.shape[:2], dtype=np.uint16)]))
    cv2.imwrite(str(three), rgb16)
    np.testing.assert_array_equal(load_image_rgb(four, log=[].append), load_image_rgb(three, log=[].append))


def test_float_tiff_stretched_and_shift_refused(tmp_path, rgb8):
    path = tmp_path / "reflectance.tif"
    cv2.imwrite(str(path), rgb8[..., ::-1].astype(np.float32) / 255.0)
    image = load_image_rgb(path, log=[].append)
    assert image.dtype == np.uint8 and image.max() == 255 and image.min() == 0
    with pytest.raises(ImageReadError, match="needs 16-bit samples, got float32"):
        load_image_rgb(path, log=[].append, high_bit_depth="shift")
    with pytest.raises(ValueError, match="high_bit_depth must be"):
        load_image_rgb(path, high_bit_depth="divide")


def test_logger_targets(tmp_path, rgb8, caplog):
    path = tmp_path / "grey.png"
    cv2.imwrite(str(path), rgb8[..., 0])
    with caplog.at_level(logging.INFO):
        load_image_rgb(path)  # default: this module's logger
        load_image_rgb(path, log=logging.getLogger("mutdet.test"))
    assert [r.name for r in caplog.records] == ["mutdet_core.datasets.images", "mutdet.test"]
    assert all("grayscale" in r.getMessage() for r in caplog.records)
