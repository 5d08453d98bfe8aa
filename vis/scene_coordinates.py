"""Shows one scene-coordinate map (`coord_<k>.npy`, h×w×4: world x, y, z in metres, confidence
1/σ) as a point cloud: an Open3D window, or with --save a picture (Open3D offscreen render, or
matplotlib when that cannot start).
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse

import numpy as np

from common.cli import run
from common.errors import InputError
from vis.helpers import (
    IMAGE_EXTS,
    check_save,
    confidence_range,
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
    parser.add_argument("coord", help="scene-coordinate map coord_<k>.npy (float32 h x w x 4)")
    add_cloud_flags(parser, default_size=(960, 720))
    parser.add_argument("--save", help="write a picture (.png or .jpg) instead of opening a window")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    save = check_save(args.save, IMAGE_EXTS)
    use_backend(save)
    coord = load_map(args.coord, 4, "scene-coordinate")
    points, conf, kept = confident_points(coord, args.thres)
    total = coord.shape[0] * coord.shape[1]
    if len(points) == 0:
        top = np.nanmax(coord[..., 3]) if np.isfinite(coord[..., 3]).any() else float("nan")
        raise InputError(f"no cell of {args.coord} has confidence above --thres {args.thres:g} "
                         f"(highest {top:.4g})")
    print(f"kept {len(points)} of {total} points (confidence > {args.thres:g})")
    ranges = confidence_range(conf) if args.color == "confidence" else position_range(points)
    colors = cloud_colors(points, conf, args.color, ranges)
    view = choose_view(points, map_axes(coord[..., :3], kept))
    title = f"{Path(args.coord).name}: {len(points)} of {total} points, confidence > {args.thres:g}"
    if save is None:
        open3d_window(points, colors, np.zeros(len(points), int), view, args.size,
                      args.point_size, title)
        return 0
    fig = PointCloudFigure(args.size, args.color, ranges if args.color == "confidence" else None)
    images, used = render(points, colors, np.zeros(len(points)), [0], view, fig.render_size,
                          args.point_size, args.renderer)
    fig.show(f"{title}  [{used}]", image=images[0] if images else None, view=view,
             points_n3=points, colors_n3=colors, point_size=args.point_size)
    show_or_save(fig.fig, save)
    return 0


if __name__ == "__main__":
    run(main)
