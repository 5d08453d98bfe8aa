"""Shows the optical flow between two frames (`<k-1>_<k>_flow.npy`, h×w×3: u, v in map cells from a
cell of frame k-1 to its position in frame k, and confidence 1/σ_q): arrows on the blended images
for the confident cells, and the flow as a colour-wheel picture (hue = direction,
saturation = length).
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse

import numpy as np

from common.cli import parse_size, run
from common.errors import InputError
from common.geometry import cell_pixels
from vis.helpers import (
    CELL,
    IMAGE_EXTS,
    check_save,
    colour_wheel,
    flow_colors,
    load_map,
    map_extent,
    new_figure,
    read_rgb,
    show_or_save,
    use_backend,
)

SUPPRESSED = (0.15, 0.15, 0.15)  # colour of cells at or below the confidence threshold


def add_flow_flags(parser, default_size):
    """The flags shared by the optical-flow scripts."""
    parser.add_argument("--thres", type=float, default=0.0,
                        help="draw cells whose confidence 1/σ_q (1/m) is above this (default 0: "
                             "every cell; e.g. 100 hides cells with σ_q above 1 cm)")
    parser.add_argument("--step", type=int, default=0,
                        help="one arrow every N cells in each direction (default: about 25 "
                             "arrows across)")
    parser.add_argument("--arrow_scale", type=float, default=1.0,
                        help="arrow length factor (default 1: arrows end where the cell was in "
                             "frame k-1)")
    parser.add_argument("--max_flow", type=float, default=0.0,
                        help="flow length in pixels that gets full colour saturation (default: "
                             "the longest confident flow)")
    parser.add_argument("--size", type=parse_size, default=default_size, metavar="WxH",
                        help="picture size in pixels (default {}x{})".format(*default_size))


def check_pair(image1, image2, flow, names):
    """Raises unless both images have one size and the flow map is 1/8 of it."""
    if image1.shape != image2.shape:
        (h1, w1), (h2, w2) = image1.shape[:2], image2.shape[:2]
        raise InputError(f"images {names[0]} and {names[1]} differ in size: {w1}x{h1} vs {w2}x{h2}")
    want = (image1.shape[0] // CELL, image1.shape[1] // CELL)
    if flow.shape[:2] != want:
        raise InputError(f"flow {names[2]} is {flow.shape[0]}x{flow.shape[1]} cells, expected "
                         f"{want[0]}x{want[1]} for {image1.shape[1]}x{image1.shape[0]} images")


class FlowFigure:
    """Two panels: blended frames with arrows, and the colour-coded flow with a colour-wheel key."""

    def __init__(self, size_wh):
        self.fig = new_figure(size_wh)
        self.ax_arrows = self.fig.add_axes([0.01, 0.03, 0.485, 0.84])
        self.ax_colour = self.fig.add_axes([0.505, 0.03, 0.485, 0.84])
        self.title = self.fig.text(0.01, 0.95, "", fontsize=11, va="center")

    def show(self, image1, image2, flow_hw3, args, title):
        """Draws one pair; returns the number of confident cells."""
        h, w = flow_hw3.shape[:2]
        u_px, v_px = CELL * flow_hw3[..., 0], CELL * flow_hw3[..., 1]
        ok = np.isfinite(flow_hw3).all(axis=2) & (flow_hw3[..., 2] > args.thres)
        longest = float(np.hypot(u_px, v_px)[ok].max()) if ok.any() else 0.0
        max_flow = args.max_flow if args.max_flow > 0 else max(longest, 1e-3)

        ax = self.ax_arrows
        ax.clear()
        blend = (0.5 * image1.astype(np.float32) + 0.5 * image2.astype(np.float32)).astype(np.uint8)
        ax.imshow(blend, interpolation="bilinear")
        step = args.step or max(1, round(w / 25))
        grid = np.zeros_like(ok)
        grid[step // 2::step, step // 2::step] = True
        ii, jj = np.nonzero(ok & grid)
        if len(ii):
            colours = flow_colors(u_px[ii, jj], v_px[ii, jj], max_flow)
            # Arrows start at the pixel of each cell (cell_pixels); flow in cells × 8 is pixels.
            xy = cell_pixels(h, w)[ii, jj]
            ax.quiver(xy[:, 0], xy[:, 1],
                      args.arrow_scale * u_px[ii, jj], args.arrow_scale * v_px[ii, jj],
                      color=colours, angles="xy", scale_units="xy", scale=1.0, width=0.004,
                      headwidth=3.5, headlength=4, edgecolor="black", linewidth=0.4)
        ax.set_title(f"frames k-1, k blended; arrows: cell of k-1 → where it is in k"
                     f"{'' if args.arrow_scale == 1 else f' (×{args.arrow_scale:g})'}", fontsize=9)
        ax.set_axis_off()

        ax = self.ax_colour
        ax.clear()
        rgb = flow_colors(u_px, v_px, max_flow)
        rgb[~ok] = SUPPRESSED
        ax.imshow(rgb, extent=map_extent(h, w), interpolation="nearest")
        ax.set_title(f"flow colour code (dark: confidence ≤ {args.thres:g}); "
                     f"full colour = {max_flow:.3g} px", fontsize=9)
        ax.set_axis_off()
        inset = ax.inset_axes([0.80, 0.02, 0.18, 0.25])
        inset.imshow(colour_wheel(), interpolation="bilinear")
        inset.set_axis_off()

        self.title.set_text(f"{title}: {int(ok.sum())} of {h * w} cells with confidence > "
                            f"{args.thres:g}, longest {longest:.3g} px")
        return int(ok.sum())


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("image1", help="frame k-1 (8-bit RGB .png/.jpg)")
    parser.add_argument("image2", help="frame k")
    parser.add_argument("flow", help="flow map <k-1>_<k>_flow.npy (float32 h x w x 3, h x w = 1/8 "
                        "of the image size)")
    add_flow_flags(parser, default_size=(1280, 560))
    parser.add_argument("--save", help="write a picture (.png or .jpg) instead of opening a window")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    save = check_save(args.save, IMAGE_EXTS)
    use_backend(save)
    image1, image2 = read_rgb(args.image1), read_rgb(args.image2)
    flow = load_map(args.flow, 3, "flow")
    check_pair(image1, image2, flow, (args.image1, args.image2, args.flow))
    fig = FlowFigure(args.size)
    kept = fig.show(image1, image2, flow, args, Path(args.flow).name)
    print(f"{kept} of {flow.shape[0] * flow.shape[1]} cells with confidence > {args.thres:g}")
    if kept == 0:
        top = np.nanmax(flow[..., 2]) if np.isfinite(flow[..., 2]).any() else float("nan")
        print(f"warning: no cell drawn: the highest confidence is {top:.3g}; lower --thres")
    show_or_save(fig.fig, save)
    return 0


if __name__ == "__main__":
    run(main)
