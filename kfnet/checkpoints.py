"""Finding and loading weights: this project's checkpoints and the original TF1 release.

A model folder written by this project holds `ckpt-N.index/.data` (tf.train.Checkpoint with
one keyword per network: `scoordnet`, `oflownet`, plus `optimizer`) and `model.json` with the
stage and network widths. A folder of the original release holds `model.ckpt-N.index/.data`
with TF1 variable names (`ScoreNet/...`, `Temporal/...`); those are imported by name.
"""

import json
import re
import sys
from pathlib import Path

import tensorflow as tf

from kfnet.errors import InputError
from kfnet.locks import atomic_write_text

MODEL_INFO = "model.json"


def write_model_info(folder, stage, widths):
    """Records what a model folder holds so that test scripts can rebuild the networks."""
    atomic_write_text(Path(folder) / MODEL_INFO,
                      json.dumps({"stage": stage, "widths": widths}, indent=2) + "\n")


def read_model_info(folder):
    """{'stage', 'widths'} of a model folder, or None (e.g. an original TF1 release)."""
    path = Path(folder) / MODEL_INFO
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_bytes())
        stage, widths = info["stage"], dict(info["widths"])
        widths = {name: float(w) for name, w in widths.items()}
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InputError(f"{path} is not a valid model description") from None
    if stage not in ("scoordnet", "oflownet", "kfnet") or not set(widths) <= {"scoordnet", "oflownet"} \
            or not all(0 < w < 100 for w in widths.values()):
        raise InputError(f"{path} is not a valid model description: stage {stage!r}, widths {widths}")
    return {"stage": stage, "widths": widths}


def latest_tf1_checkpoint(folder):
    """Prefix of the newest `model.ckpt-N` in a folder, or None."""
    best, prefix = -1, None
    for index in Path(folder).glob("model.ckpt-*.index"):
        m = re.fullmatch(r"model\.ckpt-(\d+)\.index", index.name)
        if m and int(m.group(1)) > best:
            best, prefix = int(m.group(1)), str(index)[: -len(".index")]
    return prefix


def checkpoint_prefixes(folder):
    """Prefixes of every checkpoint in a folder, newest first: this project's (ckpt-N, as listed
    in the `checkpoint` file or found on disk), then the original release's (model.ckpt-N)."""
    folder = Path(folder)
    numbered = {}
    for base in ("ckpt", "model.ckpt"):
        pattern = re.compile(re.escape(base) + r"-(\d+)\.(index|data-\d+-of-\d+)")
        for f in folder.glob(f"{base}-*"):
            m = pattern.fullmatch(f.name)
            if m:
                numbered[(base == "ckpt", int(m.group(1)))] = str(folder / f"{base}-{m.group(1)}")
    try:
        state = tf.train.get_checkpoint_state(str(folder))
    except Exception:  # an unreadable `checkpoint` file: what is on disk still counts
        state = None
    for listed in (state.all_model_checkpoint_paths if state else []):
        m = re.fullmatch(r"ckpt-(\d+)", Path(listed).name)
        if m:
            numbered[(True, int(m.group(1)))] = str(folder / Path(listed).name)
    return [numbered[key] for key in sorted(numbered, reverse=True)]


def _damaged(path):
    """Why a checkpoint cannot be used as a whole (no index, no data, unreadable index), or None."""
    if not Path(path + ".index").is_file():
        return "its index file is missing"
    if not list(Path(path).parent.glob(Path(path).name + ".data-*")):
        return "its data file is missing"
    try:
        tf.train.load_checkpoint(path).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError, IndexError) as e:
        return f"its index cannot be read ({str(e).splitlines()[0]})"
    return None


DAMAGE_ERRORS = (tf.errors.DataLossError, tf.errors.OutOfRangeError, tf.errors.NotFoundError, IndexError)


def _candidates(folder, flag):
    """(kind, path) of the checkpoints whose index reads, newest first; damaged ones are warned
    about. InputError when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"model folder not found: {folder} ({flag})")
    prefixes = checkpoint_prefixes(folder)
    if not prefixes:
        raise InputError(f"no checkpoint in {folder} ({flag}): expected ckpt-N or model.ckpt-N files")
    found, problems = [], {}
    for path in prefixes:
        problem = _damaged(path)
        if problem:
            problems[path] = problem
            continue
        keys = tf.train.load_checkpoint(path).get_variable_to_shape_map()
        found.append(("tf2" if "_CHECKPOINTABLE_OBJECT_GRAPH" in keys else "tf1", path))
    if not found:
        _none_whole(folder, flag, prefixes, problems)
    return found, problems


def _none_whole(folder, flag, prefixes, problems):
    raise InputError(f"no whole checkpoint in {folder} ({flag}): "
                     + "; ".join(f"{p}: {problems[p]}" for p in prefixes if p in problems))


def find_checkpoint(folder, flag="--model_folder"):
    """('tf2', path) or ('tf1', prefix) of the newest whole weights in a model folder.

    Object-based checkpoints (tf.train.Checkpoint) are this project's; name-based ones (a TF1
    Saver's `model.ckpt-N`) are the original release's.
    """
    return _candidates(folder, flag)[0][0]


def import_tf1(prefix, name_to_variable):
    """Assigns TF1 checkpoint tensors to variables by original name; all must be present."""
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        raise InputError(f"cannot read TF1 checkpoint {prefix}: {str(e).splitlines()[0]}") from None
    shapes = reader.get_variable_to_shape_map()
    for name, var in name_to_variable.items():
        if name not in shapes:
            raise InputError(f"TF1 checkpoint {prefix} has no variable {name}")
        if tuple(shapes[name]) != tuple(var.shape):
            raise InputError(f"TF1 checkpoint {prefix}: {name} has shape {tuple(shapes[name])}, "
                             f"the network expects {tuple(var.shape)} (wrong width?)")
        var.assign(reader.get_tensor(name))  # a truncated data file raises DAMAGE_ERRORS


def checkpoint_children(path):
    """Names of the top-level objects in a tf.train.Checkpoint (e.g. scoordnet, optimizer)."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(tf.train.load_checkpoint(path).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    return {child.local_name for child in graph.nodes[0].children}


def _load(kind, path, nets, flag):
    if kind == "tf1":
        mapping = {}
        for net in nets.values():
            mapping.update(net.tf1_variables())
        import_tf1(path, mapping)
        return
    held = checkpoint_children(path)
    for name in nets:
        if name not in held:
            raise InputError(f"checkpoint {path} ({flag}) holds no '{name}' network "
                             f"(it holds: {', '.join(sorted(held))})")
    try:
        tf.train.Checkpoint(**nets).read(path).expect_partial().assert_existing_objects_matched()
    except DAMAGE_ERRORS:
        raise
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise InputError(f"checkpoint {path} ({flag}) does not fit the network: "
                         f"{str(e).splitlines()[0]}") from None


def load_networks(folder, nets, flag="--model_folder"):
    """Loads weights for built networks {'scoordnet': net, 'oflownet': net} from a model folder.

    Returns ('tf2' | 'tf1', path). Every requested network must be in the checkpoint. A damaged
    newest checkpoint (truncated data, missing index) is skipped with a warning naming the one used.
    """
    found, problems = _candidates(folder, flag)
    for kind, path in found:
        try:
            _load(kind, path, nets, flag)
        except DAMAGE_ERRORS as e:
            problems[path] = f"its data cannot be read ({str(e).splitlines()[0]})"
            continue
        for damaged, problem in sorted(problems.items(), key=lambda item: _number(item[0]), reverse=True):
            print(f"warning: skipping damaged checkpoint {damaged}: {problem}; using {path}",
                  file=sys.stderr)
        return kind, path
    _none_whole(folder, flag, checkpoint_prefixes(folder), problems)


def _number(prefix):
    return int(prefix.rsplit("-", 1)[1])


def network_widths(folder, stage_cfgs):
    """Widths to build networks for a model folder: its model.json, else 1.0 for TF1 releases."""
    info = read_model_info(folder)
    if info is not None:
        return info["widths"]
    kind, _ = find_checkpoint(folder)
    if kind == "tf1":
        return {name: 1.0 for name in stage_cfgs}
    return {name: float(cfg.get("width", 1.0)) for name, cfg in stage_cfgs.items()}
