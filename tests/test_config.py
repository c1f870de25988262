"""Config validation: the schema documents every key, fills defaults, and rejects bad configs clearly."""
import copy

import pytest
import yaml

from mutdet_core.config import ConfigError, load_config, load_schema, validate_config


def _walk(schema, path="", defs=None):
    defs = defs if defs is not None else schema.get("definitions", {})
    for key, sub in schema.get("properties", {}).items():
        yield f"{path}/{key}", sub
        yield from _walk(sub, f"{path}/{key}", defs)
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}/*", defs)
    if "$ref" in schema:
        yield from _walk(defs[schema["$ref"].split("/")[-1]], path, defs)


def test_every_key_has_description_and_default():
    schema = load_schema()
    missing = []
    for path, sub in _walk(schema):
        if "description" not in sub and "$ref" not in sub:
            missing.append(f"{path}: description")
        # required keys have no default on purpose; every other leaf has one
        if "default" not in sub and path.split("/")[-1] not in ("source", "root"):
            missing.append(f"{path}: default")
    assert not missing, missing


def test_default_config_is_valid_and_filled(repo_root):
    config = load_config(repo_root / "config.yaml")
    assert config["datasets"]["synthetic"]["tiling"]["iof_thr"] == 0.7
    assert config["datasets"]["synthetic"]["labelled"] is True


def test_empty_config_gets_all_defaults():
    config = validate_config({})
    assert config["results_dir"] == "results"
    assert "synthetic" in config["datasets"]


@pytest.mark.parametrize("patch,needle", [
    ({"datasets": {"x": {"source": "imagenet"}}}, "datasets/x/source"),
    ({"datasets": {"x": {"source": "dota", "tiling": {"iof_thr": 1.5}}}}, "iof_thr"),
    ({"unknown_key": 1}, "unknown_key"),
    ({"synthetic": {"images": {"train": 0}}}, "synthetic/images/train"),
])
def test_bad_config_names_the_key(patch, needle):
    with pytest.raises(ConfigError, match=needle):
        validate_config(copy.deepcopy(patch))


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
