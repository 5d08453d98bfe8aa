"""Writes a video of a sequence's optical flow: for every `<k-1>_<k>_flow.npy`, the flow arrows on
frames k-1 and k blended and the colour-wheel flow picture (as vis/optical_flow.py draws one pair).
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse

from tqdm import tqdm

from common import formats
from common.cli import add_output_flags, run
from common.errors import InputError
from common.formats import read_list
from vis.helpers import (
    VIDEO_EXTS,
    VideoWriter,
    check_save,
    figure_rgb,
    list_maps,
    load_map,
    read_rgb,
    use_backend,
)
from vis.optical_flow import FlowFigure, add_flow_flags, check_pair


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("flows", metavar="LIST_OR_FOLDER",
                        help="a folder of <k-1>_<k>_flow.npy files (taken in order of k) or a text "
                             "file listing such paths, one per line")
    parser.add_argument("--images", required=True,
                        help="image_list.txt of the sequence (line k = frame k), or the input "
                             "folder that holds it")
    add_flow_flags(parser, default_size=(1280, 560))
    parser.add_argument("--every", type=int, default=1, help="use every N-th flow (default 1)")
    parser.add_argument("--fps", type=float, default=5.0,
                        help="video frames per second (default 5)")
    parser.add_argument("--save", required=True, help="video to write: .gif, or .mp4 (needs "
                        "imageio-ffmpeg)")
    add_output_flags(parser, quiet=False)
    args = parser.parse_args(argv)
    if args.every < 1 or args.fps <= 0:
        parser.error("--every must be at least 1 and --fps positive")
    return args


def frame_pair(path):
    """(k-1, k) of a flow file name `<k-1>_<k>_flow.npy`."""
    pair = formats.flow_pair(path)
    if pair is None:
        raise InputError(f"flow file {path} is not named <k-1>_<k>_flow.npy")
    return pair


def main(argv=None):
    args = parse_args(argv)
    save = check_save(args.save, VIDEO_EXTS)
    use_backend(save)
    flows = list_maps(args.flows, formats.FLOW_GLOB)[::args.every]
    image_list = Path(args.images)
    if image_list.is_dir():
        image_list = image_list / "image_list.txt"
    images = read_list(image_list)
    pairs = [frame_pair(p) for p in flows]
    for path, (a, b) in zip(flows, pairs):
        if max(a, b) >= len(images):
            raise InputError(f"flow {path} needs frame {max(a, b)} but {image_list} lists "
                             f"{len(images)} images")
    fig = FlowFigure(args.size)
    with VideoWriter(save, args.fps) as writer:
        for path, (a, b) in zip(tqdm(flows, desc="flows", unit="frame", leave=False, disable=not args.progress), pairs):
            image1, image2 = read_rgb(images[a]), read_rgb(images[b])
            flow = load_map(path, 3, "flow")
            check_pair(image1, image2, flow, (images[a], images[b], path))
            fig.show(image1, image2, flow, args, f"{Path(path).name} ({Path(images[b]).name})")
            writer.append(figure_rgb(fig.fig))
    return 0


if __name__ == "__main__":
    run(main)
