"""Which training file went bad after the start: the one-line message for a failed input pipeline.

The tf.data readers (common/data/pipelines.py) fail with a TensorFlow error that often does not
name the file (a truncated PNG, a label of the wrong size). This looks for it: first a file the
error names, then every listed file cheaply (present, same label size, image header), then by
decoding the images.
"""

import os
from pathlib import Path

from PIL import Image

from common.data.labels import label_layout
from common.errors import InputError


def _image_problem(path, image_hw, decode=False):
    if not os.path.isfile(path):
        return "image not found (deleted after the start?)"
    try:
        with Image.open(path) as im:
            size = im.size[1], im.size[0]
            if decode:
                im.load()
    except OSError as e:
        return f"cannot read image ({str(e).splitlines()[0] if str(e) else 'unreadable'})"
    if size != tuple(image_hw):
        return f"image is now {size[1]}x{size[0]}, was {image_hw[1]}x{image_hw[0]} at the start"
    return None


def _label_problem(path, image_hw, layout):
    if not os.path.isfile(path):
        return "label not found (deleted after the start?)"
    try:
        now = label_layout(path, image_hw)
    except InputError as e:
        return str(e)
    if now != layout:
        return "label changed its layout since the start"
    return None


def _problems(data, error_text, decode):
    lists = [("image_list.txt", data.image_paths, lambda k, p: _image_problem(p, data.image_hw, decode))]
    if data.has_labels:
        lists.append(("label_list.txt", data.label_paths,
                      lambda k, p: _label_problem(p, data.image_hw, data.label_layouts[k])))
    named = [(name, k, p, check) for name, paths, check in lists for k, p in enumerate(paths)
             if p in error_text]
    everything = [(name, k, p, check) for name, paths, check in lists for k, p in enumerate(paths)]
    for name, k, path, check in named + everything:
        problem = check(k, path)
        if problem:
            yield name, k, path, problem


def describe_bad_file(data, error):
    """'IN/image_list.txt line N: PATH: problem' for the file behind a tf.data error."""
    text = str(getattr(error, "message", None) or error)
    first = text.splitlines()[0] if text else type(error).__name__
    if data is None:
        return f"cannot read the training data: {first}"
    for decode in (False, True):
        for name, k, path, problem in _problems(data, text, decode):
            return f"{Path(data.folder) / name} line {k + 1}: {path}: {problem}"
    return f"cannot read the training data of {data.folder}: {first}"
