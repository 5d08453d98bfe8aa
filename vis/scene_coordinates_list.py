"""Shows a sequence of scene-coordinate maps accumulated frame by frame as one growing point cloud:
an Open3D window that adds each map in turn, or with --save a video (.gif, .mp4) of the growth or a
picture (.png, .jpg) of the whole accumulated cloud.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse

import numpy as np
from tqdm import tqdm

from common import formats
from common.cli import add_output_flags, run
from common.errors import InputError
from vis.helpers import (
    IMAGE_EXTS,
    VIDEO_EXTS,
    VideoWriter,
    check_save,
    confidence_range,
    figure_rgb,
    list_maps,
    load_map,
    position_range,
    show_or_save,
    use_backend,
)
from vis.offscreen import render
from vis.pointcloud import (
    PointCloudFigure,
    add_cloud_flags,
    choose_view,
    cloud_colors,
    confident_points,
    map_axes,
    open3d_window,
)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("maps", metavar="LIST_OR_FOLDER",
                        help="a folder of coord_<k>.npy maps (taken in order of k) or a text file "
                             "listing .npy map paths, one per line")
    add_cloud_flags(parser, default_size=(960, 720))
    parser.add_argument("--every", type=int, default=1,
                        help="use every N-th map of the sequence (default 1: all)")
    parser.add_argument("--fps", type=float, default=5.0,
                        help="video frames per second (default 5)")
    parser.add_argument("--save", help="write a video (.gif, or .mp4 with imageio-ffmpeg) of the "
                        "growing cloud, or a picture (.png, .jpg) of the final one, instead of "
                        "opening a window")
    add_output_flags(parser, quiet=False)
    args = parser.parse_args(argv)
    if args.every < 1 or args.fps <= 0:
        parser.error("--every must be at least 1 and --fps positive")
    return args


def load_sequence(paths, thres, progress=True):
    """(points [N, 3], confidences [N], frame of each point [N], (forward, down) of map 0)."""
    points, confs, frames, axes = [], [], [], None
    for n, path in enumerate(tqdm(paths, desc="reading maps", unit="map", leave=False, disable=not progress)):
        coord = load_map(path, 4, "scene-coordinate")
        p, c, kept = confident_points(coord, thres)
        points.append(p)
        confs.append(c)
        frames.append(np.full(len(p), n))
        if axes is None:
            axes = map_axes(coord[..., :3], kept)
    return np.concatenate(points), np.concatenate(confs), np.concatenate(frames), axes


def main(argv=None):
    args = parse_args(argv)
    save = check_save(args.save, VIDEO_EXTS + IMAGE_EXTS)
    use_backend(save)
    paths = list_maps(args.maps, formats.COORD_GLOB)[::args.every]
    points, conf, frames, axes = load_sequence(paths, args.thres, args.progress)
    if len(points) == 0:
        raise InputError(f"no cell of the {len(paths)} maps has confidence above "
                         f"--thres {args.thres:g}")
    print(f"{len(paths)} maps, kept {len(points)} points (confidence > {args.thres:g})")
    ranges = confidence_range(conf) if args.color == "confidence" else position_range(points)
    colors = cloud_colors(points, conf, args.color, ranges)
    view = choose_view(points, axes)
    names = [Path(p).stem for p in paths]
    if save is None:
        open3d_window(points, colors, frames, view, args.size, args.point_size,
                      "scene coordinates", args.fps)
        return 0
    video = save.suffix.lower() in VIDEO_EXTS
    snapshots = list(range(len(paths))) if video else [len(paths) - 1]
    fig = PointCloudFigure(args.size, args.color, ranges if args.color == "confidence" else None)
    with tqdm(total=len(snapshots), desc="rendering", unit="frame", leave=False,
              disable=not args.progress) as bar:
        images, used = render(points, colors, frames, snapshots, view, fig.render_size,
                              args.point_size, args.renderer, progress=bar)

    def show(i, snap):
        sel = frames <= snap
        title = (f"{names[0]} … {names[snap]} ({snap + 1} of {len(paths)} maps): "
                 f"{sel.sum()} points, confidence > {args.thres:g}  [{used}]")
        fig.show(title, image=images[i] if images else None, view=view, points_n3=points[sel],
                 colors_n3=colors[sel], point_size=args.point_size)

    if not video:
        show(0, snapshots[0])
        show_or_save(fig.fig, save)
        return 0
    with VideoWriter(save, args.fps) as writer:
        for i, snap in enumerate(tqdm(snapshots, desc="writing", unit="frame", leave=False, disable=not args.progress)):
            show(i, snap)
            writer.append(figure_rgb(fig.fig))
    return 0


if __name__ == "__main__":
    run(main)
