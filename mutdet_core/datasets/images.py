"""Reading remote-sensing images into 8-bit RGB, with one documented policy for unusual files.

``load_image_rgb(path)`` returns ``np.uint8`` ``(H, W, 3)`` in RGB order. The policy:

* **8-bit, 3 channels** (DOTA PNG, DIOR-R/HRRSD/OHD JPG, FAIR1M 8-bit TIF): exactly
  ``cv2.imread(path)[..., ::-1]``, including EXIF orientation. mmrotate's splitter reads images with
  ``cv2.imread`` defaults, so our tiles have the same pixels as its tiles.
* **Unreadable file** (missing, not an image, decoder failure) or **truncated file** (a JPEG without its
  end-of-image marker after the last scan, a PNG without its ``IEND`` chunk): ``ImageReadError`` naming the
  file. OpenCV decodes a truncated JPEG without failing (it fills the missing rows with grey and only prints
  "Premature end of JPEG file"), so the check is done on the bytes before decoding.
* **More than 8 bits** (16-bit, 32-bit or float): scaled to 8 bits with a per-band 2-98 % percentile stretch
  (the "cumulative count cut" QGIS and ENVI show multispectral scenes with), logged. Pixels that are 0 in
  every band are left out of the statistics, since satellite scenes use 0 for no-data borders. Why not
  ``cv2.imread``'s ``value >> 8``: satellite products store 10-12-bit radiometry (GF-2 values rarely exceed
  1023) in 16-bit containers, and dividing by 256 turns them into an almost black image, nothing like the
  8-bit imagery the detector is trained on. ``high_bit_depth="shift"`` gives the ``>> 8`` behaviour of
  ``cv2.imread`` for 16-bit files that use the full range.
* **More pixels than OpenCV decodes** (``OPENCV_IO_MAX_IMAGE_PIXELS``, 2^30 by default, e.g. 60000 x 60000):
  ``ImageReadError`` from the header size, before decoding (OpenCV itself would raise ``cv2.error``).
* **Grayscale** (1 band): replicated to 3 channels, logged.
* **4 bands** (RGBA, or RGB + NIR): bands 1-3 of the file kept as R, G, B, band 4 dropped, logged. Products
  stored B, G, R, NIR (e.g. PlanetScope) must be reordered before use.
* **Any other band count** (2, or more than 4): ``ImageReadError`` naming the file and the count.
* **Multi-band TIFF not tagged as RGB** (``PhotometricInterpretation=MinIsBlack``, GDAL's default for 16-bit
  and many multispectral GeoTIFFs): OpenCV would silently return band 1 only, so this is an
  ``ImageReadError`` that says how to rewrite the file (``gdal_translate -co PHOTOMETRIC=RGB``).

``image_size(path)`` reads only the header (PIL) and returns ``(width, height)`` after EXIF orientation,
i.e. the shape ``load_image_rgb`` will return; it does not detect truncation.
"""
from __future__ import annotations

import logging
import os
import struct
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

_EXIF_ORIENTATION = 0x0112
_STRETCH_PERCENTILES = (2.0, 98.0)
_STATS_MAX_PIXELS = 1_000_000  # percentiles from a regular subsample of at most this many pixels


class ImageReadError(ValueError):
    """An image file that cannot be turned into 8-bit RGB; the message names the file."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def max_decode_pixels() -> int:
    """The most pixels OpenCV decodes: ``OPENCV_IO_MAX_IMAGE_PIXELS`` (read by OpenCV when it loads), default 2^30."""
    try:
        return int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", 1 << 30))
    except ValueError:
        return 1 << 30


def check_decodable_size(path, width: int, height: int) -> None:
    """Raise ``ImageReadError`` when a ``width`` x ``height`` image is more than OpenCV will decode."""
    limit = max_decode_pixels()
    if width * height > limit:
        raise ImageReadError(path, f"{width} x {height} = {width * height} pixels is more than OpenCV decodes "
                                   f"({limit}); cut it into smaller images first (e.g. gdal_translate -srcwin), "
                                   "or set OPENCV_IO_MAX_IMAGE_PIXELS higher before starting")


def _emit(log, message: str) -> None:
    if log is None:
        logger.info(message)
    elif hasattr(log, "info"):
        log.info(message)
    else:
        log(message)


def _check_complete(data: bytes, path: Path) -> None:
    """Raise if a JPEG or PNG stream stops before its end marker."""
    if data[:2] == b"\xff\xd8":
        # In entropy-coded data 0xFF is always stuffed (FF00) or a restart marker (FFD0-FFD7), so FFD9 after
        # the last start-of-scan (FFDA) can only be the real end-of-image marker; an EXIF thumbnail's EOI
        # comes before the main image's scans.
        if data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
            raise ImageReadError(path, "truncated JPEG (no end-of-image marker after the last scan)")
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if data.rfind(b"IEND") < data.rfind(b"IDAT"):
            raise ImageReadError(path, "truncated PNG (no IEND chunk after the image data)")


def _tiff_band_count(data: bytes) -> int | None:
    """SamplesPerPixel of a classic TIFF's first image, read from the header; ``None`` if not found."""
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    end = "<" if data[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack(end + "I", data[4:8])
        (count,) = struct.unpack(end + "H", data[ifd:ifd + 2])
        for i in range(count):
            tag, typ, _, value = struct.unpack(end + "HHI4s", data[ifd + 2 + 12 * i: ifd + 14 + 12 * i])
            if tag == 277:  # SamplesPerPixel (SHORT, stored left-justified in the value field)
                return struct.unpack(end + "H", value[:2])[0]
    except struct.error:
        return None
    return 1


@contextmanager
def _open_header(path: Path):
    """PIL image opened for its header only. PIL refuses images over ~179 Mpx as "decompression bombs";
    remote-sensing scenes are legitimately that large (DOTA has 20000 x 20000), so the limit is lifted."""
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as im:
            yield im
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _header_orientation(im) -> int:
    """EXIF orientation from an opened header. For PNG, ``getexif()`` decodes the whole image to look for
    an eXIf chunk after the pixels (0.1 s per DOTA image); only a chunk before them is consulted."""
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    return int(im.getexif().get(_EXIF_ORIENTATION, 1))


def _apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip like a viewer honouring EXIF ``orientation`` (1-8), as cv2.imread does for 8-bit files."""
    if orientation in (5, 6, 7, 8):
        image = np.swapaxes(image, 0, 1)  # transpose; then 6 = +flip x, 8 = +flip y, 7 = +both
    flip_x = orientation in (2, 3, 6, 7)
    flip_y = orientation in (3, 4, 7, 8)
    if flip_x:
        image = image[:, ::-1]
    if flip_y:
        image = image[::-1]
    return np.ascontiguousarray(image)


def _stretch_to_uint8(bands: np.ndarray) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Per-band 2-98 % linear stretch of ``(H, W, C)`` to uint8; pixels 0 in all bands skip the statistics."""
    h, w = bands.shape[:2]
    step = max(1, int(np.ceil(np.sqrt(h * w / _STATS_MAX_PIXELS))))
    sample = bands[::step, ::step].reshape(-1, bands.shape[2]).astype(np.float64)
    valid = sample[np.any(sample != 0, axis=1)]
    if len(valid) == 0:
        valid = sample
    out = np.empty(bands.shape, dtype=np.uint8)
    ranges = []
    for c in range(bands.shape[2]):
        lo, hi = np.percentile(valid[:, c], _STRETCH_PERCENTILES)
        if not hi > lo:  # flat band: keep it flat, at the bottom of the range
            hi = lo + 1.0
        scaled = (bands[..., c].astype(np.float64) - lo) * (255.0 / (hi - lo))
        out[..., c] = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        ranges.append((float(lo), float(hi)))
    return out, ranges


def load_image_rgb(path, log=None, high_bit_depth: str = "percentile") -> np.ndarray:
    """Read an image as ``np.uint8`` ``(H, W, 3)`` RGB under the module's policy.

    Args:
        path: image file (PNG, JPEG, TIFF, BMP, anything OpenCV decodes).
        log: where conversion notes go: a callable taking a string, a ``logging.Logger``, or ``None`` for
            this module's logger. Plain 8-bit RGB images log nothing.
        high_bit_depth: ``"percentile"`` (default, per-band 2-98 % stretch) or ``"shift"`` (16-bit only:
            ``value >> 8``, what ``cv2.imread`` does).

    Raises:
        ImageReadError: missing, unreadable or truncated file; 2 or more than 4 bands; a multi-band TIFF
            OpenCV would read as one band; an unsupported sample type; ``high_bit_depth="shift"`` on a
            non-16-bit image.
    """
    path = Path(path)
    if high_bit_depth not in ("percentile", "shift"):
        raise ValueError(f"high_bit_depth must be 'percentile' or 'shift', got {high_bit_depth!r}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageReadError(path, f"cannot read file ({err.strerror or err})") from None
    _check_complete(data, path)
    orientation = 1  # no EXIF, or a format PIL cannot open: OpenCV applies nothing either
    try:
        with _open_header(path) as im:
            check_decodable_size(path, *im.size)  # OpenCV would raise cv2.error, naming no file
            orientation = _header_orientation(im)
    except ImageReadError:
        raise
    except Exception:  # PIL cannot read the header (some TIFFs): the cv2.error handler below still applies
        pass
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        raise ImageReadError(path, f"OpenCV cannot decode it ({str(err).strip().splitlines()[-1]})") from None
    tiff_bands = _tiff_band_count(data)
    if tiff_bands is not None and tiff_bands not in (1, 3, 4):
        raise ImageReadError(path, f"{tiff_bands} bands; only 1 (grey), 3 (RGB) or 4 (RGBA / RGB+NIR) are "
                                   "supported: extract three bands first (e.g. gdal_translate -b 1 -b 2 -b 3)")
    if image is None or image.size == 0:
        raise ImageReadError(path, "not a readable image (OpenCV cannot decode it; corrupt, truncated or "
                                   "unsupported format)")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if tiff_bands is not None and tiff_bands > channels:
        # OpenCV silently returns only band 1 of a multi-band TIFF tagged MinIsBlack (GDAL's default for
        # 16-bit and >3-band GeoTIFFs); refusing is better than training on a grey copy of the red band.
        raise ImageReadError(path, f"TIFF has {tiff_bands} bands but OpenCV decodes {channels} (bands not "
                                   "tagged as RGB); rewrite it with PHOTOMETRIC=RGB, e.g. gdal_translate -b 1 "
                                   "-b 2 -b 3 -co PHOTOMETRIC=RGB in.tif out.tif")
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        if orientation != 1:
            # Let OpenCV apply the orientation itself so the pixels match cv2.imread exactly.
            image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        return np.ascontiguousarray(image[..., ::-1])

    image = _apply_orientation(image, orientation)
    if image.ndim == 2:
        image = image[..., None]
    n_bands = image.shape[2]
    if n_bands == 1:
        rgb = np.repeat(image, 3, axis=2)
        _emit(log, f"{path}: grayscale image, band replicated to R, G and B")
    elif n_bands in (3, 4):
        # OpenCV returns the first three file bands reversed (BGR / BGRA), so [2, 1, 0] is file order.
        rgb = image[..., 2::-1]
        if n_bands == 4:
            _emit(log, f"{path}: 4 bands (RGBA or RGB+NIR); kept bands 1-3 as RGB, dropped band 4")
    else:
        raise ImageReadError(path, f"{n_bands} bands; only 1 (grey), 3 (RGB) or 4 (RGBA / RGB+NIR) are supported")

    if rgb.dtype == np.uint8:
        return np.ascontiguousarray(rgb)
    if rgb.dtype not in (np.uint16, np.int16, np.uint32, np.int32, np.float32, np.float64):
        raise ImageReadError(path, f"unsupported sample type {rgb.dtype}")
    if high_bit_depth == "shift":
        if rgb.dtype != np.uint16:
            raise ImageReadError(path, f"high_bit_depth='shift' needs 16-bit samples, got {rgb.dtype}")
        _emit(log, f"{path}: 16-bit image, scaled to 8 bits as value >> 8 (like cv2.imread)")
        return np.ascontiguousarray((rgb >> 8).astype(np.uint8))
    out, ranges = _stretch_to_uint8(rgb)
    shown = ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in ranges)
    _emit(log, f"{path}: {rgb.dtype} image, stretched to 8 bits per band (2-98 % percentiles {shown} -> [0, 255])")
    return out


def image_size(path) -> tuple[int, int]:
    """``(width, height)`` of an image from its header (after EXIF orientation), without decoding pixels.

    Falls back to a full OpenCV decode for files PIL cannot identify (some multi-band TIFFs).
    Raises ImageReadError for a missing file or a file that is not an image.
    """
    from PIL import UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "no such file")
    try:
        with _open_header(path) as im:
            width, height = im.size
            orientation = _header_orientation(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        try:
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        except cv2.error as err:
            raise ImageReadError(path, f"OpenCV cannot decode it ({str(err).strip().splitlines()[-1]})") from None
        if image is None:
            raise ImageReadError(path, "not a readable image") from None
        return int(image.shape[1]), int(image.shape[0])
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return int(width), int(height)
