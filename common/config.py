"""Scene settings: YAML files under configs/, looked up by scene name, merged with defaults.

A config file may name another with `inherit: NAME`; its keys override the inherited ones.
Stage sections (`scoordnet:`, `oflownet:`, `kfnet:`) override top-level keys for that stage
only (see `stage_config`). Keys are documented in configs/defaults.yaml.
"""

import copy
from pathlib import Path

import yaml

from common.errors import InputError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
STAGES = ("scoordnet", "oflownet", "kfnet")


def available_scenes():
    """Maps scene name → YAML path for every file under configs/ except defaults.yaml."""
    found = {}
    for path in sorted(CONFIG_DIR.rglob("*.yaml")):
        if path.stem != "defaults":
            found.setdefault(path.stem, path)
    return found


def _read_yaml(path):
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except OSError as e:
        raise InputError(f"cannot read config {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"config {path} is not UTF-8 text") from None
    except yaml.YAMLError as e:
        raise InputError(f"config {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise InputError(f"config {path} must be a mapping of keys to values")
    for stage in STAGES:
        if not isinstance(data.get(stage) or {}, dict):
            raise InputError(f"config {path}: the '{stage}:' section must be a mapping of keys to values")
    return data


def _merge(base, over):
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_chain(path, seen):
    data = _read_yaml(path)
    parent = data.pop("inherit", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise InputError(f"config {path}: inherit must be a config name, got {parent!r}")
    scenes = available_scenes()
    if parent not in scenes:
        raise InputError(f"config {path} inherits unknown config '{parent}'")
    if parent in seen:
        raise InputError(f"config {path} inherits '{parent}' in a cycle")
    return _merge(_load_chain(scenes[parent], seen | {parent}), data)


def load_config(scene=None, config=None):
    """Settings for --scene NAME or --config FILE (neither: the defaults alone)."""
    cfg = _read_yaml(CONFIG_DIR / "defaults.yaml")
    if scene is not None:
        scenes = available_scenes()
        if scene not in scenes:
            raise InputError(f"unknown scene '{scene}' (--scene); known: {', '.join(scenes)}")
        path = scenes[scene]
    elif config is not None:
        path = Path(config)
        if not path.is_file():
            raise InputError(f"config file not found: {config} (--config)")
    else:
        return cfg
    cfg = _merge(cfg, _load_chain(path, {path.stem}))
    cfg["name"] = cfg.get("name") or path.stem
    return cfg


def config_source(scene=None, config=None):
    """The file settings come from: --config, the scene's YAML, or configs/defaults.yaml."""
    if config is not None:
        return str(config)
    if scene is not None and scene in available_scenes():
        return str(available_scenes()[scene])
    return str(CONFIG_DIR / "defaults.yaml")


def stage_config(cfg, stage):
    """Top-level settings with the stage's own section laid over them (sections dropped)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage}")
    flat = {k: v for k, v in cfg.items() if k not in STAGES}
    return _merge(flat, cfg.get(stage) or {})


def override(cfg, **flags):
    """Flags given on the command line (not None) replace config values."""
    out = dict(cfg)
    out.update({k: v for k, v in flags.items() if v is not None})
    return out


def max_steps(cfg):
    """max_steps, or 5 × stepvalue when unset (docs/reference.md §5)."""
    return int(cfg["max_steps"]) if cfg.get("max_steps") else 5 * int(cfg["stepvalue"])


def intrinsics(cfg):
    """3×3 camera matrix of the RGB images from focal (focal_y), cx, cy."""
    import numpy as np

    fx = float(cfg["focal"])
    fy = float(cfg.get("focal_y") or fx)
    return np.array([[fx, 0, float(cfg["cx"])], [0, fy, float(cfg["cy"])], [0, 0, 1]])
