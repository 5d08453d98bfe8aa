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

import keras
import tensorflow as tf

from common.errors import InputError
from common.locks import atomic_write_text

MODEL_INFO = "model.json"


def write_model_info(folder, stage, widths, run=None):
    """Records what a model folder holds so that test scripts can rebuild the networks.

    `run` (common.summaries.run_description: config, seed, git describe, command) is kept too.
    """
    info = {"stage": stage, "widths": widths}
    if run is not None:
        info.update(run)
    atomic_write_text(Path(folder) / MODEL_INFO, json.dumps(info, indent=2, default=str) + "\n")


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


def _candidates(folder, flag, step=None):
    """(kind, path) of the checkpoints whose index reads, newest first (only step `step`, when
    given); damaged ones are warned about. InputError when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"model folder not found: {folder} ({flag})")
    prefixes = checkpoint_prefixes(folder)
    if not prefixes:
        raise InputError(f"no checkpoint in {folder} ({flag}): expected ckpt-N or model.ckpt-N files")
    if step is not None:
        have = sorted({_number(p) for p in prefixes})
        prefixes = [p for p in prefixes if _number(p) == step]
        if not prefixes:
            raise InputError(f"--checkpoint {step}: no checkpoint of that step in {folder} ({flag}; "
                             f"steps there: {', '.join(str(n) for n in have)})")
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


def find_checkpoint(folder, flag="--model_folder", step=None):
    """('tf2', path) or ('tf1', prefix) of the newest whole weights in a model folder (or of `step`).

    Object-based checkpoints (tf.train.Checkpoint) are this project's; name-based ones (a TF1
    Saver's `model.ckpt-N`) are the original release's.
    """
    return _candidates(folder, flag, step)[0][0]


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


def load_networks(folder, nets, flag="--model_folder", step=None):
    """Loads weights for built networks {'scoordnet': net, 'oflownet': net} from a model folder.

    `step` picks ckpt-N / model.ckpt-N (default: the newest). Returns ('tf2' | 'tf1', path). Every requested network must be in the checkpoint. A damaged
    newest checkpoint (truncated data, missing index) is skipped with a warning naming the one used.
    """
    found, problems = _candidates(folder, flag, step)
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


def _adam_slots(adam, var):
    """(first moment, second moment) variables of a built Keras Adam for one of its variables."""
    index = adam._get_variable_index(var)
    return adam._momentums[index], adam._velocities[index]


def load_adam_moments(folder, name, net, adam, flag="--model_folder"):
    """Copies the Adam moment estimates that a pre-trained stage's checkpoint holds for `net`'s
    variables into `adam` (built over a superset of them). Returns how many variables got them.

    The original restored each network's `…/Adam` and `…/Adam_1` slots with its weights when
    stage 3 started from the pre-trained stages; this does the same for its TF1 checkpoints and
    for this project's (whose optimizer saved moments in the order of the stage's variables).
    Adam's own step count (its bias correction) starts afresh, as the original's did.
    """
    kind, path = find_checkpoint(folder, flag)
    reader = tf.train.load_checkpoint(path)
    if kind == "tf1":
        shapes = reader.get_variable_to_shape_map()
        count = 0
        for name, var in net.tf1_variables().items():
            if f"{name}/Adam" in shapes and f"{name}/Adam_1" in shapes:
                m, v = _adam_slots(adam, var)
                m.assign(reader.get_tensor(f"{name}/Adam"))
                v.assign(reader.get_tensor(f"{name}/Adam_1"))
                count += 1
        return count
    info = read_model_info(folder)
    if info is None or info["stage"] != name or "optimizer" not in checkpoint_children(path):
        return 0
    # An Adam built as the Trainer builds one, over the stage's variables, reads the slots back
    # in their saved order; its moments then go to the same variables of `adam`.
    variables = net.trainable_variables
    saved = keras.optimizers.Adam(lambda: 0.0)
    saved.build(variables)
    try:
        tf.train.Checkpoint(optimizer=saved).read(path).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError):
        return 0
    for var in variables:
        for source, target in zip(_adam_slots(saved, var), _adam_slots(adam, var)):
            target.assign(source)
    return len(variables)
