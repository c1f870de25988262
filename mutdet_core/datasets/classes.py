"""Class lists of the datasets MutDet uses (SPEC section 6), in the order the paper's tables use.

A class id is the position of the name in ``ClassList.names``. The names are spelled as the dataset's own
label files spell them (DIOR-R keeps its raw mixed-case ``Expressway-Service-area`` and
``Expressway-toll-station``), so a record read from the original files needs no renaming.

Other codebases spell some names differently (mmrotate 1.x lower-cases the DIOR-R names; DOTA-format
conversions of FAIR1M replace spaces by ``-`` or ``_``). ``ClassList.canonical`` maps such a spelling back to
the canonical one by comparing names case-insensitively with spaces, ``-`` and ``_`` removed; in none of the
lists below do two classes collide under that rule (checked by the tests).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_SEPARATORS = re.compile(r"[\s_\-]+")


def class_key(name: str) -> str:
    """The spelling-insensitive key of a class name: lower case, without spaces, ``-`` and ``_``."""
    return _SEPARATORS.sub("", name).lower()


@dataclass(frozen=True)
class ClassList:
    """An ordered list of class names, optionally with the paper's abbreviations.

    Attributes:
        dataset: display name, e.g. ``"DIOR-R"``.
        names: canonical class names; the index is the class id.
        abbreviations: table abbreviations in the same order (``None`` when the paper uses none).
    """

    dataset: str
    names: tuple[str, ...]
    abbreviations: tuple[str, ...] | None = None
    _by_key: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.abbreviations is not None and len(self.abbreviations) != len(self.names):
            raise ValueError(f"{self.dataset}: {len(self.names)} names but {len(self.abbreviations)} abbreviations")
        by_key = {}
        for name in self.names:
            key = class_key(name)
            if key in by_key:
                raise ValueError(f"{self.dataset}: {name!r} and {by_key[key]!r} have the same spelling key")
            by_key[key] = name
        object.__setattr__(self, "_by_key", by_key)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def canonical(self, name: str) -> str | None:
        """The canonical spelling of ``name`` (any case, spaces/``-``/``_`` interchangeable), else ``None``."""
        return self._by_key.get(class_key(name))

    def index(self, name: str) -> int:
        """Class id of ``name`` (any accepted spelling). Raises ``KeyError`` naming the known classes."""
        canonical = self.canonical(name)
        if canonical is None:
            raise KeyError(f"{name!r} is not a {self.dataset} class; known classes: {list(self.names)}")
        return self.names.index(canonical)

    def abbreviation(self, name: str) -> str:
        """The table abbreviation of ``name`` (``KeyError`` if the dataset has none or the name is unknown)."""
        if self.abbreviations is None:
            raise KeyError(f"{self.dataset} has no class abbreviations")
        return self.abbreviations[self.index(name)]


DOTA_V1 = ClassList(
    "DOTA-v1.0",
    ("plane", "baseball-diamond", "bridge", "ground-track-field", "small-vehicle", "large-vehicle", "ship",
     "tennis-court", "basketball-court", "storage-tank", "soccer-ball-field", "roundabout", "harbor",
     "swimming-pool", "helicopter"),
    ("PL", "BD", "BR", "GTF", "SV", "LV", "SH", "TC", "BC", "ST", "SBF", "RA", "HA", "SP", "HC"),
)

# The APL...WM order of the paper's tables and MutDet's DIOR config; mmrotate 1.x and ARS-DETR put
# ESA/ETS before dam, so class ids from those codebases differ (map by name, never by id).
DIOR_R = ClassList(
    "DIOR-R",
    ("airplane", "airport", "baseballfield", "basketballcourt", "bridge", "chimney", "dam",
     "Expressway-Service-area", "Expressway-toll-station", "golffield", "groundtrackfield", "harbor",
     "overpass", "ship", "stadium", "storagetank", "tenniscourt", "trainstation", "vehicle", "windmill"),
    ("APL", "APO", "BF", "BC", "BR", "CH", "DAM", "ESA", "ETS", "GF", "GTF", "HA", "OP", "SH", "STA", "STO",
     "TC", "TS", "VE", "WM"),
)

OHD_SJTU_S = ClassList("OHD-SJTU-S", ("plane", "ship"))

OHD_SJTU_L = ClassList(
    "OHD-SJTU-L", ("small-vehicle", "ship", "plane", "large-vehicle", "helicopter", "harbor")
)

# Order and spelling from the HRRSD README (CrazyStoneonRoad/TGRS-HRRSD-Dataset); the raw XML spelling
# (e.g. "T junction" vs "T-junction") was not verified, which ``canonical`` absorbs.
HRRSD = ClassList(
    "HRRSD",
    ("ship", "bridge", "ground track field", "storage tank", "basketball court", "tennis court", "airplane",
     "baseball diamond", "harbor", "vehicle", "crossroad", "T junction", "parking lot"),
)

# FAIR1M-2.0 fine-grained classes as spelled in its XML <possibleresult><name>. The count (37: 11 airplane,
# 9 ship, 10 vehicle, 4 court, 3 road types) is NOT verified from the official devkit (which was not
# read); it agrees with several third-party FAIR1M dataset classes. Used for pre-training only.
FAIR1M = ClassList(
    "FAIR1M-2.0",
    ("Boeing737", "Boeing747", "Boeing777", "Boeing787", "C919", "A220", "A321", "A330", "A350", "ARJ21",
     "other-airplane",
     "Passenger Ship", "Motorboat", "Fishing Boat", "Tugboat", "Engineering Ship", "Liquid Cargo Ship",
     "Dry Cargo Ship", "Warship", "other-ship",
     "Small Car", "Bus", "Cargo Truck", "Dump Truck", "Van", "Trailer", "Tractor", "Excavator",
     "Truck Tractor", "other-vehicle",
     "Basketball Court", "Tennis Court", "Football Field", "Baseball Field",
     "Intersection", "Roundabout", "Bridge"),
)

_LISTS = {
    "dota": DOTA_V1, "dotav1": DOTA_V1, "dotav10": DOTA_V1,
    "dior": DIOR_R, "diorr": DIOR_R,
    "ohdsjtus": OHD_SJTU_S, "ohdsjtul": OHD_SJTU_L,
    "hrrsd": HRRSD,
    "fair1m": FAIR1M, "fair1m2": FAIR1M, "fair1m20": FAIR1M,
}


def get_class_list(dataset_name: str) -> ClassList:
    """The class list of a dataset by name (``"dota"``, ``"DOTA-v1.0"``, ``"dior_r"``, ``"DIOR-R"``,
    ``"ohd_sjtu_s"``, ``"ohd_sjtu_l"``, ``"hrrsd"``, ``"fair1m"``, ``"FAIR1M-2.0"``; case, ``-``, ``_``, ``.``
    and spaces ignored). Raises ``ValueError`` listing the accepted names for an unknown dataset."""
    key = re.sub(r"[\s_\-.]+", "", str(dataset_name)).lower()
    if key not in _LISTS:
        known = "dota_v1, dior_r, ohd_sjtu_s, ohd_sjtu_l, hrrsd, fair1m"
        raise ValueError(f"unknown dataset {dataset_name!r}: class lists exist for {known}")
    return _LISTS[key]


def normalize_dior_name(name: str) -> str:
    """The raw DIOR-R spelling of ``name`` (``"expressway-service-area"`` -> ``"Expressway-Service-area"``);
    a name that is no DIOR-R class is returned unchanged so the caller can report it."""
    return DIOR_R.canonical(name) or name
