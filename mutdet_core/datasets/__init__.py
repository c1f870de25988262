"""Dataset readers: every format becomes a list of ``ImageRecord`` (see ``records``).

- DOTA-v1.0: ``read_dota_txt``, ``read_dota_folder``; classes ``DOTA_V1``
- DIOR-R: ``read_dior_xml``, ``read_dior_split``; classes ``DIOR_R``
- FAIR1M-2.0: ``read_fair1m_xml``, ``read_fair1m_folder``; classes ``FAIR1M``
- HRRSD: ``read_hrrsd_xml``, ``read_hrrsd_split``, ``read_hrrsd_folder``; classes ``HRRSD``
- OHD-SJTU: ``read_ohd_sjtu_txt``, ``read_ohd_sjtu_folder``; classes ``OHD_SJTU_S`` / ``OHD_SJTU_L``

``records_to_dota_folder`` writes any of them in DOTA layout; ``images.load_image_rgb`` reads the pixels.
"""
from .._lazy import lazy_exports

_EXPORTS = {
    "DIOR_R": ".classes", "DOTA_V1": ".classes", "FAIR1M": ".classes", "HRRSD": ".classes",
    "OHD_SJTU_L": ".classes", "OHD_SJTU_S": ".classes", "ClassList": ".classes", "get_class_list": ".classes",
    "normalize_dior_name": ".classes", "read_dior_split": ".dior", "read_dior_xml": ".dior",
    "drop_degenerate": ".dota", "polygon_areas": ".dota", "read_dota_folder": ".dota", "read_dota_txt": ".dota",
    "read_task1_folder": ".dota", "records_to_dota_folder": ".dota", "write_dota_txt": ".dota",
    "write_task1_folder": ".dota", "read_fair1m_folder": ".fair1m", "read_fair1m_xml": ".fair1m",
    "read_hrrsd_folder": ".hrrsd", "read_hrrsd_split": ".hrrsd", "read_hrrsd_xml": ".hrrsd",
    "ImageReadError": ".images", "image_size": ".images", "load_image_rgb": ".images",
    "read_ohd_sjtu_folder": ".ohd_sjtu", "read_ohd_sjtu_txt": ".ohd_sjtu", "ImageRecord": ".records",
    "LabelFormatError": ".records",
}

__all__ = [
    "ClassList", "DIOR_R", "DOTA_V1", "FAIR1M", "HRRSD", "OHD_SJTU_L", "OHD_SJTU_S", "get_class_list",
    "normalize_dior_name", "read_dior_split", "read_dior_xml", "drop_degenerate", "polygon_areas",
    "read_dota_folder", "read_dota_txt", "read_task1_folder", "records_to_dota_folder", "write_dota_txt",
    "write_task1_folder", "read_fair1m_folder", "read_fair1m_xml", "read_hrrsd_folder", "read_hrrsd_split",
    "read_hrrsd_xml",
    "ImageReadError", "image_size", "load_image_rgb", "read_ohd_sjtu_folder", "read_ohd_sjtu_txt",
    "ImageRecord", "LabelFormatError",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
