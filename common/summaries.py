"""What a training run records for TensorBoard and model.json: pictures of maps, the run's identity.

Pictures are float RGB in [0, 1], NumPy only (no plotting library is needed to train):
coordinate errors on a linear ramp, σ on a log ramp, flow on the Middlebury colour wheel.
"""

import json
import subprocess
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ERROR_MAX = 0.5  # metres: the top of the coordinate-error ramp
SIGMA_RANGE = (1e-3, 1.0)  # metres: the bottom and top of the log σ ramp

# Dark blue → blue → cyan → yellow → red → dark red: a perceptually ordered heat ramp.
_RAMP = np.array([[0.0, 0.0, 0.3], [0.0, 0.2, 1.0], [0.0, 0.9, 0.9], [1.0, 1.0, 0.0],
                  [1.0, 0.1, 0.0], [0.5, 0.0, 0.0]])


def ramp(t):
    """[..., 3] colours of values t in [0, 1] (clipped) on the heat ramp."""
    t = np.clip(np.nan_to_num(np.asarray(t, np.float64)), 0.0, 1.0) * (len(_RAMP) - 1)
    i = np.minimum(np.floor(t).astype(int), len(_RAMP) - 2)
    f = (t - i)[..., None]
    return (1 - f) * _RAMP[i] + f * _RAMP[i + 1]


def error_image(error_hw, mask_hw=None):
    """[h, w, 3]: coordinate error (metres) on 0…ERROR_MAX; cells outside the mask black."""
    rgb = ramp(np.asarray(error_hw) / ERROR_MAX)
    if mask_hw is not None:
        rgb = rgb * (np.asarray(mask_hw) > 0.5)[..., None]
    return rgb


def sigma_image(sigma_hw):
    """[h, w, 3]: σ (metres) on a log ramp from SIGMA_RANGE[0] to SIGMA_RANGE[1]."""
    lo, hi = np.log(SIGMA_RANGE[0]), np.log(SIGMA_RANGE[1])
    return ramp((np.log(np.maximum(np.asarray(sigma_hw, np.float64), 1e-12)) - lo) / (hi - lo))


def colour_wheel():
    """[55, 3] RGB in [0, 1] of the Middlebury flow colour wheel (Baker et al. 2011), as in RAFT.

    Six hue segments red→yellow→green→cyan→blue→magenta→red of 15, 6, 4, 11, 13 and 6 steps.
    """
    segments = [(15, (1, 0, 0), (1, 1, 0)), (6, (1, 1, 0), (0, 1, 0)), (4, (0, 1, 0), (0, 1, 1)),
                (11, (0, 1, 1), (0, 0, 1)), (13, (0, 0, 1), (1, 0, 1)), (6, (1, 0, 1), (1, 0, 0))]
    rows = []
    for n, a, b in segments:
        f = np.floor(255 * np.arange(n)[:, None] / n) / 255
        rows.append((1 - f) * np.array(a, float) + f * np.array(b, float))
    return np.concatenate(rows)


def flow_image(flow_hw2, max_norm=None):
    """[h, w, 3]: flow (x right, y down) on the colour wheel; saturation = |flow| / max_norm.

    max_norm defaults to the largest flow of the map. Inside the unit disc colours fade to white
    at zero flow; beyond it (only with an explicit max_norm) they are darkened.
    """
    flow = np.nan_to_num(np.asarray(flow_hw2, np.float64))
    u, v = flow[..., 0], flow[..., 1]
    norm = np.hypot(u, v)
    if max_norm is None:
        max_norm = float(norm.max())
    rad = norm / max(max_norm, 1e-9)
    wheel = colour_wheel()
    n = len(wheel)
    angle = np.arctan2(-v, -u) / np.pi  # −1…1, as the Middlebury code
    fk = (angle + 1) / 2 * (n - 1)
    k0 = np.floor(fk).astype(int)
    k1 = (k0 + 1) % n
    f = (fk - k0)[..., None]
    col = (1 - f) * wheel[k0] + f * wheel[k1]
    inside = (rad <= 1)[..., None]
    return np.where(inside, 1 - rad[..., None] * (1 - col), col * 0.75)


def upsample(image_hw3, factor):
    """Nearest-neighbour enlargement, so that one map cell covers its 8×8 pixels."""
    return np.repeat(np.repeat(image_hw3, factor, axis=-3), factor, axis=-2)


def git_describe():
    """`git describe --always --dirty --tags` of the code, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=ROOT,
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def run_description(cfg, command=None):
    """{'config', 'seed', 'git_describe', 'command'}: what reproduces a run (JSON-ready)."""
    config = json.loads(json.dumps(cfg, default=str))
    return {"config": config, "seed": config.get("seed"), "git_describe": git_describe(),
            "command": list(command) if command is not None else None}


def run_markdown(run):
    """The run description as a TensorBoard text summary (markdown)."""
    lines = [f"**git describe**: `{run['git_describe']}`", "", f"**seed**: {run['seed']}", ""]
    if run.get("command"):
        lines += ["**command**: `" + " ".join(run["command"]) + "`", ""]
    lines += ["| setting | value |", "|---|---|"]
    lines += [f"| {k} | {json.dumps(v)} |" for k, v in sorted(run["config"].items())]
    return "\n".join(lines)


def _np(x):
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x, np.float64)


def coordinate_pictures(coords_nhw3, gt_nhw3, mask_nhw1, factor=8):
    """[n, H, W, 3]: per-cell distance to the labels (metres) on the error ramp, enlarged."""
    err = np.linalg.norm(_np(coords_nhw3) - _np(gt_nhw3), axis=-1)
    return upsample(error_image(err, _np(mask_nhw1)[..., 0]), factor)


def sigma_pictures(sigma_nhw1, factor=8):
    """[n, H, W, 3]: σ maps (metres) on the log ramp, enlarged."""
    return upsample(sigma_image(_np(sigma_nhw1)[..., 0]), factor)


def flow_pictures(flow_nhw2, factor=8):
    """[n, H, W, 3]: flow maps on the colour wheel, each scaled by its own largest flow."""
    return upsample(np.stack([flow_image(f) for f in _np(flow_nhw2)]), factor)


def input_pictures(images_nhw3):
    """[n, H, W, 3] in [0, 1] from the pipeline's [0, 255] images."""
    return np.clip(_np(images_nhw3) / 255.0, 0.0, 1.0)


DESCRIPTIONS = {
    "coord_error": f"distance to the label, 0 (dark blue) … {ERROR_MAX} m (dark red); black: no label",
    "sigma_q": f"predicted process noise σ_q, log scale {SIGMA_RANGE[0]} m … {SIGMA_RANGE[1]} m",
    "sigma": f"predicted σ, log scale {SIGMA_RANGE[0]} m (dark blue) … {SIGMA_RANGE[1]} m (dark red)",
    "flow": "flow on the Middlebury colour wheel (white: no motion), scaled by the map's largest flow",
}


def description(name):
    """The legend of a picture named like 'sigma_prior' or 'coord_error'."""
    for key, text in DESCRIPTIONS.items():
        if name.startswith(key):
            return text
    return ""
