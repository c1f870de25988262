"""Class lists of SPEC section 6: order, abbreviations, spelling normalisation, lookup by dataset name."""
from __future__ import annotations

import pytest

from mutdet_core.datasets import (DIOR_R, DOTA_V1, FAIR1M, HRRSD, OHD_SJTU_L, OHD_SJTU_S, get_class_list,
                                  normalize_dior_name)


def test_dota_table_order():
    assert DOTA_V1.num_classes == 15
    assert " ".join(DOTA_V1.abbreviations) == "PL BD BR GTF SV LV SH TC BC ST SBF RA HA SP HC"
    assert DOTA_V1.names[0] == "plane" and DOTA_V1.names[4] == "small-vehicle" and DOTA_V1.names[-1] == "helicopter"
    assert DOTA_V1.index("storage-tank") == 9 and DOTA_V1.abbreviation("soccer-ball-field") == "SBF"


def test_dior_table_order_and_raw_names():
    assert DIOR_R.num_classes == 20
    assert " ".join(DIOR_R.abbreviations) == ("APL APO BF BC BR CH DAM ESA ETS GF GTF HA OP SH STA STO TC TS "
                                              "VE WM")
    # MutDet/table order: dam before the two expressway classes (mmrotate 1.x puts it after them).
    assert DIOR_R.names[5:9] == ("chimney", "dam", "Expressway-Service-area", "Expressway-toll-station")
    assert DIOR_R.abbreviation("Expressway-toll-station") == "ETS"


@pytest.mark.parametrize("spelling,canonical", [
    ("expressway-service-area", "Expressway-Service-area"),   # mmrotate 1.x
    ("Expressway-Service-area", "Expressway-Service-area"),   # raw XML / ARS-DETR
    ("EXPRESSWAY_TOLL_STATION", "Expressway-toll-station"),
    ("golffield", "golffield"),
    ("Golffield", "golffield"),
])
def test_dior_normaliser(spelling, canonical):
    assert normalize_dior_name(spelling) == canonical
    assert DIOR_R.index(spelling) == DIOR_R.names.index(canonical)


def test_unknown_dior_name_passes_through_for_reporting():
    assert normalize_dior_name("helipad") == "helipad"
    with pytest.raises(KeyError, match="helipad"):
        DIOR_R.index("helipad")


def test_other_lists():
    assert OHD_SJTU_S.names == ("plane", "ship")
    assert OHD_SJTU_L.names == ("small-vehicle", "ship", "plane", "large-vehicle", "helicopter", "harbor")
    assert HRRSD.num_classes == 13 and HRRSD.names[0] == "ship" and HRRSD.names[-1] == "parking lot"
    assert HRRSD.canonical("T-junction") == "T junction" and HRRSD.canonical("ground_track_field") == \
        "ground track field"
    assert FAIR1M.num_classes == 37 and FAIR1M.abbreviations is None
    assert FAIR1M.canonical("Small-Car") == "Small Car" and FAIR1M.canonical("small car") == "Small Car"
    assert FAIR1M.canonical("other-airplane") == "other-airplane"
    with pytest.raises(KeyError, match="no class abbreviations"):
        FAIR1M.abbreviation("Bus")


@pytest.mark.parametrize("name,expected", [
    ("dota", DOTA_V1), ("DOTA-v1.0", DOTA_V1), ("dota_v1", DOTA_V1), ("DIOR-R", DIOR_R), ("dior_r", DIOR_R),
    ("ohd_sjtu_s", OHD_SJTU_S), ("OHD-SJTU-L", OHD_SJTU_L), ("hrrsd", HRRSD), ("FAIR1M-2.0", FAIR1M),
    ("fair1m", FAIR1M),
])
def test_get_class_list(name, expected):
    assert get_class_list(name) is expected


def test_get_class_list_unknown():
    with pytest.raises(ValueError, match=r"unknown dataset 'coco'.*dota_v1.*fair1m"):
        get_class_list("coco")


def test_names_unique_under_spelling_key():
    from mutdet_core.datasets.classes import class_key

    for cl in (DOTA_V1, DIOR_R, OHD_SJTU_S, OHD_SJTU_L, HRRSD, FAIR1M):
        keys = [class_key(n) for n in cl.names]
        assert len(set(keys)) == len(keys), cl.dataset
        assert all(cl.canonical(n) == n for n in cl.names)
