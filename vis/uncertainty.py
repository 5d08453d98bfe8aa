"""Shows the uncertainties of one frame of a KFNet test run side by side: measurement, prior and
posterior scene-coordinate noise (and, with --flow_folder, the process noise of the flow), as σ in
centimetres or as confidence 1/σ, on one shared colour scale where brighter means more certain.

Reads OUT/measurement/coord_<k>.npy, OUT/prior/coord_<k>.npy (KFNet test with --save_measurement;
the first frame of a sequence has no prior), OUT/coord_<k>.npy and FLOW_FOLDER/<k-1>_<k>_flow.npy.
Missing maps are reported and left out.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse

import numpy as np

from common import formats
from common.cli import parse_size, run
from common.errors import InputError
from vis.helpers import (
    IMAGE_EXTS,
    check_save,
    load_map,
    map_extent,
    new_figure,
    read_rgb,
    show_or_save,
    use_backend,
)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", metavar="OUT", help="output folder of the KFNet test")
    parser.add_argument("--index", type=int, required=True, help="frame k (line of image_list.txt)")
    parser.add_argument("--flow_folder", help="folder of <k-1>_<k>_flow.npy files: also show the "
                        "process noise σ_q")
    parser.add_argument("--image", help="the frame's image, shown first")
    parser.add_argument("--units", choices=("sigma", "confidence"), default="sigma",
                        help="show σ in cm (default) or confidence 1/σ in 1/m")
    parser.add_argument("--size", type=parse_size, metavar="WxH",
                        help="picture size in pixels (default: 1600 wide, as high as the "
                             "panels need)")
    parser.add_argument("--save", help="write a picture (.png or .jpg) instead of opening a window")
    args = parser.parse_args(argv)
    if args.index < 0:
        parser.error("--index must be 0 or more")
    return args


def wanted_maps(args):
    """[(label, path, channel count, why it may be missing)] in display order."""
    out, k = Path(args.out), args.index
    maps = [("measurement σ_r", formats.coord_file(out / "measurement", k), 4,
             "written by the KFNet test with --save_measurement"),
            ("prior σ⁻", formats.coord_file(out / "prior", k), 4,
             "written with --save_measurement; the first frame of a sequence has none"),
            ("posterior σ", formats.coord_file(out, k), 4, "the KFNet test's output")]
    if args.flow_folder:
        maps.append(("process σ_q", formats.flow_file(args.flow_folder, k), 3,
                     "the OFlowNet/KFNet flow of frames k-1, k; frame 0 has none"))
    return maps


def sigma_cm(conf_hw):
    """σ in centimetres of confidences 1/σ (1/m); NaN where the confidence is not positive."""
    conf = np.where(np.isfinite(conf_hw) & (conf_hw > 0), conf_hw, np.nan)
    return 100.0 / conf


def colour_scale(sigmas_cm, units):
    """(norm, colormap, colour-bar label) shared by all panels: 2nd to 98th percentile, log scale,
    brighter = more certain; missing cells grey."""
    import matplotlib
    from matplotlib.colors import LogNorm

    values = np.concatenate([s[np.isfinite(s)] for s in sigmas_cm])
    lo, hi = np.percentile(values, [2, 98]) if values.size else (1.0, 10.0)
    hi = max(hi, lo * 1.01)
    if units == "sigma":
        norm, name, unit = LogNorm(lo, hi), "viridis_r", "σ (cm), brighter = smaller"
    else:
        norm, name = LogNorm(100 / hi, 100 / lo), "viridis"
        unit = "confidence 1/σ (1/m), brighter = larger"
    return norm, matplotlib.colormaps[name].with_extremes(bad=(0.6, 0.6, 0.6)), unit


def main(argv=None):
    args = parse_args(argv)
    save = check_save(args.save, IMAGE_EXTS)
    use_backend(save)
    if not Path(args.out).is_dir():
        raise InputError(f"output folder not found: {args.out}")
    panels = []
    for label, path, channels, why in wanted_maps(args):
        if not path.is_file():
            print(f"note: no {label.split()[0]} map {path} ({why}); skipped")
            continue
        sigma = sigma_cm(load_map(path, channels, label.split()[0])[..., -1])
        median = float(np.nanmedian(sigma)) if np.isfinite(sigma).any() else float("nan")
        print(f"{label.split()[0]}: median σ {median:.2f} cm over {np.isfinite(sigma).sum()} cells")
        panels.append((label, sigma, median))
    if not panels:
        raise InputError(f"none of the maps of frame {args.index} exist under {args.out}")
    shapes = {p[1].shape for p in panels}
    if len(shapes) > 1:
        raise InputError(f"the maps of frame {args.index} differ in size: {sorted(shapes)}")
    image = read_rgb(args.image) if args.image else None
    n = len(panels) + (image is not None)
    norm, cmap, unit = colour_scale([p[1] for p in panels], args.units)

    h, w = panels[0][1].shape
    size = args.size or (1600, round((1600 - 130) / n * h / w + 70))
    fig = new_figure(size)
    fig.set_layout_engine("constrained")
    axes = np.atleast_1d(fig.subplots(1, n))
    if image is not None:
        axes[0].imshow(image, extent=map_extent(h, w))
        axes[0].set_title(Path(args.image).name, fontsize=10)
        axes[0].set_axis_off()
    for ax, (label, sigma, median) in zip(axes[n - len(panels):], panels):
        shown = sigma if args.units == "sigma" else 100.0 / sigma
        im = ax.imshow(shown, norm=norm, cmap=cmap, extent=map_extent(h, w),
                       interpolation="nearest")
        summary = f"{median:.2f} cm" if args.units == "sigma" else f"1/σ {100 / median:.3g} /m"
        ax.set_title(f"{label}: median {summary}", fontsize=10)
        ax.set_axis_off()
    fig.colorbar(im, ax=list(axes), shrink=0.85, label=unit)
    fig.suptitle(f"{args.out}: frame {args.index}", fontsize=11)
    show_or_save(fig, save)
    return 0


if __name__ == "__main__":
    run(main)
