"""Point clouds of scene-coordinate maps: a viewpoint, the picture around a render, a window.

With --save, vis/offscreen.py renders the view with Open3D (or says why not) and
`draw_matplotlib` draws the same view when Open3D cannot.
"""

import time
from dataclasses import dataclass

import numpy as np

from common.cli import parse_size
from vis.helpers import axes_pixels, confidence_colors, new_figure, position_colors

BACKGROUND = (0.12, 0.12, 0.14)


@dataclass
class View:
    """A pinhole look-at camera in world coordinates (metres); fov is vertical, in degrees."""

    eye: np.ndarray
    centre: np.ndarray
    up: np.ndarray
    fov: float = 50.0


def map_axes(coords_hw3, valid_hw):
    """(forward [3], down [3]) world directions of a map's camera, from its grid layout.

    Neighbouring cells along a row step along the camera's x axis (right), down a column along
    its y axis (down); their cross product is the viewing direction (OpenCV axes). Medians of
    the steps keep depth edges from mattering.
    """
    ok_c = valid_hw[:, 1:] & valid_hw[:, :-1]
    ok_r = valid_hw[1:, :] & valid_hw[:-1, :]
    if ok_c.sum() < 3 or ok_r.sum() < 3:
        return None
    right = np.median((coords_hw3[:, 1:] - coords_hw3[:, :-1])[ok_c], axis=0)
    down = np.median((coords_hw3[1:, :] - coords_hw3[:-1, :])[ok_r], axis=0)
    if np.linalg.norm(right) < 1e-9 or np.linalg.norm(down) < 1e-9:
        return None
    right = right / np.linalg.norm(right)
    down = down - right * (down @ right)
    down = down / max(np.linalg.norm(down), 1e-12)
    forward = np.cross(right, down)
    return forward / np.linalg.norm(forward), down


def choose_view(points_n3, axes=None, turn_deg=25.0, raise_deg=20.0, fov=50.0):
    """A view of all points from behind the map's camera, turned and raised for depth.

    `axes` = (forward, down) from `map_axes`; without it the view looks along world +z.
    """
    lo, hi = np.percentile(points_n3, [2, 98], axis=0)
    centre = (lo + hi) / 2
    radius = max(np.linalg.norm(hi - lo) / 2, 1e-3)
    forward, down = axes if axes is not None else (np.array([0., 0., 1.]), np.array([0., 1., 0.]))
    up = -down
    side = np.cross(forward, up)
    a, b = np.radians(turn_deg), np.radians(raise_deg)
    direction = np.cos(b) * (np.cos(a) * forward + np.sin(a) * side) - np.sin(b) * up
    distance = 0.85 * radius / np.sin(np.radians(fov) / 2)
    return View(eye=centre - distance * direction, centre=centre, up=up, fov=fov)


def project(view, points_n3, size_wh):
    """(pixels [N, 2] (x right, y down), depth [N]) of points seen by the view's pinhole camera."""
    w, h = size_wh
    forward = view.centre - view.eye
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, view.up)
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    rel = points_n3 - view.eye
    x, y, z = rel @ right, rel @ down, rel @ forward
    f = (h / 2) / np.tan(np.radians(view.fov) / 2)
    zs = np.where(z > 1e-6, z, np.nan)
    return np.stack([f * x / zs + w / 2, f * y / zs + h / 2], axis=1), z


def draw_matplotlib(ax, view, points_n3, colors_n3, size_wh, point_size):
    """Draws points into an axes spanning size_wh pixels, far to near (painter's order)."""
    w, h = size_wh
    px, z = project(view, points_n3, size_wh)
    keep = np.isfinite(px).all(axis=1)
    order = np.argsort(-z[keep])
    dpi = ax.figure.dpi
    ax.set_facecolor(BACKGROUND)
    ax.scatter(px[keep][order, 0], px[keep][order, 1], c=colors_n3[keep][order],
               s=(point_size * 72.0 / dpi) ** 2, marker="s", linewidths=0)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_aspect("equal")


def add_cloud_flags(parser, default_size):
    """The flags shared by the scene-coordinate scripts."""
    parser.add_argument("--thres", type=float, default=20.0,
                        help="keep points whose confidence 1/σ (1/m) is above this (default 20, "
                             "i.e. σ < 5 cm); 0 keeps every point with a positive confidence")
    parser.add_argument("--color", choices=("confidence", "position"), default="confidence",
                        help="colour points by confidence (log scale, brighter = more certain; "
                             "default) or by position (normalized x, y, z as red, green, blue)")
    parser.add_argument("--size", type=parse_size, default=default_size, metavar="WxH",
                        help="picture size in pixels (default {}x{})".format(*default_size))
    parser.add_argument("--point_size", type=float, default=3.0,
                        help="point size in pixels (default 3)")
    parser.add_argument("--renderer", choices=("auto", "open3d", "matplotlib"), default="auto",
                        help="for --save: Open3D's offscreen renderer, falling back to matplotlib "
                             "with a note if it cannot start (auto, default), only Open3D, or "
                             "only matplotlib")


def confident_points(coord_hw4, thres):
    """(points [N, 3], confidences [N], kept [h, w] bool) of the cells with confidence > thres."""
    finite = np.isfinite(coord_hw4).all(axis=2)
    kept = finite & (coord_hw4[..., 3] > max(thres, 0.0))
    return coord_hw4[kept][:, :3].astype(np.float64), coord_hw4[kept][:, 3], kept


def cloud_colors(points_n3, conf_n, mode, ranges):
    """[N, 3] RGB of points; ranges = (lo, hi) of confidence or of position for the mode."""
    if mode == "confidence":
        return confidence_colors(conf_n, *ranges)
    return position_colors(points_n3, *ranges)


class PointCloudFigure:
    """A figure of exact pixel size: the rendered cloud, a title and (confidences) a colour bar."""

    def __init__(self, size_wh, color_mode, conf_range=None):
        import matplotlib
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import LogNorm

        self.fig = new_figure(size_wh)
        self.fig.set_facecolor("white")
        right = 0.86 if color_mode == "confidence" else 0.995
        self.ax = self.fig.add_axes([0.005, 0.005, right - 0.01, 0.92])
        self.ax.set_xticks([])
        self.ax.set_yticks([])
        for spine in self.ax.spines.values():
            spine.set_visible(False)
        if color_mode == "confidence":
            cax = self.fig.add_axes([0.885, 0.08, 0.025, 0.8])
            mappable = ScalarMappable(norm=LogNorm(*conf_range),
                                      cmap=matplotlib.colormaps["viridis"])
            bar = self.fig.colorbar(mappable, cax=cax)
            bar.set_label("confidence 1/σ (1/m), brighter = more certain")
        self.title = self.fig.text(0.01, 0.955, "", fontsize=11, va="center")
        self._artist = None

    @property
    def render_size(self):
        """(width, height) in pixels that a render must have to fill the picture area."""
        return axes_pixels(self.fig, self.ax)

    def show(self, title, image=None, view=None, points_n3=None, colors_n3=None, point_size=3.0):
        """Puts a rendered image, or else the points drawn by matplotlib, under a title."""
        self.title.set_text(title)
        if image is not None:
            if self._artist is None:
                self._artist = self.ax.imshow(image, interpolation="nearest")
            else:
                self._artist.set_data(image)
            return
        if self._artist is not None:
            self._artist.remove()
        before = set(self.ax.collections)
        draw_matplotlib(self.ax, view, points_n3, colors_n3, self.render_size, point_size)
        self._artist = next(iter(set(self.ax.collections) - before))


def open3d_window(points_n3, colors_n3, frame_n, view, size_wh, point_size, title, fps=5.0):
    """An interactive Open3D window opened at `view`; frames 0, 1, … are added one by one at
    `fps`, then the window stays until closed."""
    import open3d as o3d

    vis = o3d.visualization.Visualizer()
    vis.create_window(window_name=title, width=size_wh[0], height=size_wh[1])
    options = vis.get_render_option()
    options.background_color = np.asarray(BACKGROUND)
    options.point_size = point_size
    for n in range(int(frame_n.max()) + 1):
        sel = frame_n == n
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points_n3[sel]))
        cloud.colors = o3d.utility.Vector3dVector(colors_n3[sel])
        vis.add_geometry(cloud, reset_bounding_box=(n == 0))
        if n == 0:
            control = vis.get_view_control()
            front = view.eye - view.centre
            control.set_lookat(view.centre)
            control.set_front(front / np.linalg.norm(front))
            control.set_up(view.up)
            control.set_zoom(0.7)
        vis.poll_events()
        vis.update_renderer()
        if n < frame_n.max():
            time.sleep(1.0 / fps)
    vis.run()
    vis.destroy_window()
