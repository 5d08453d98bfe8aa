"""Streaming relocalization: one RGB frame in, its camera pose out (docs/reference.md §1, §4, §6).

    reloc = Relocalizer.load("runs/chess/kfnet", scene="chess", transform="data/chess/test/transform.txt")
    for image in frames:                       # uint8 [H, W, 3], H and W multiples of 8
        result = reloc.step(image)
        if result.pose is not None: ...        # camera-to-world 4×4, metres

Per frame: one pass of SCoordNet (measurement) and of OFlowNet (flow from the previous frame),
the Kalman filter, RANSAC-PnP; no file I/O. `KalmanStream` is the per-frame filter loop; the
test CLI (kfnet/test.py, which batches the network passes), the oracle and the benchmark use it.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from common import filter as kf
from common import formats
from common.config import intrinsics as config_intrinsics
from common.config import load_config, stage_config
from common.errors import InputError
from common.formats import read_matrix_file
from common.geometry import transform_points
from common.poses import invert_rigid
from common.test_cli import build_networks
from kfnet.model import KFNet
from oflownet.model import OFlowNet
from pnp.solve import solve_frame
from scoordnet.model import SCoordNet

NIS_THRESHOLD = 7.815  # chi-square, 3 degrees of freedom: 95 %


def _checked(prior_variance, process_noise_scale):
    if prior_variance not in kf.PRIOR_VARIANCES:
        raise InputError(f"prior_variance {prior_variance!r} (--prior_variance or the config's kfnet: "
                         f"prior_variance): must be one of {', '.join(kf.PRIOR_VARIANCES)}")
    if isinstance(process_noise_scale, bool) or not isinstance(process_noise_scale, (int, float)) \
            or not process_noise_scale > 0:
        raise InputError(f"process_noise_scale {process_noise_scale!r} (--process_noise_scale or the "
                         f"config's kfnet: process_noise_scale): must be a positive number")
    return {"prior_variance": prior_variance, "process_noise_scale": float(process_noise_scale)}


def filter_options(kfnet_cfg, prior_variance=None, process_noise_scale=None):
    """KalmanStream's prior_variance and process_noise_scale, checked: the flags' where given, else
    the config's `kfnet:` section, else the original's."""
    if prior_variance is None:
        prior_variance = kfnet_cfg.get("prior_variance") or "warped_sigma"
    if process_noise_scale is None:
        process_noise_scale = kfnet_cfg.get("process_noise_scale", 1.0)
    return _checked(prior_variance, process_noise_scale)


@dataclass
class FilterStep:
    """One frame through the filter; maps [1, h, w, ·] in the normalized frame, variances σ².

    `shown` is what gets written out: the posterior, or with the NIS test on, the measurement
    where the test fails. The state carried on is always (x, p). prior_x, prior_p and nis are
    None at a sequence start (the state restarts from the measurement)."""

    shown: tf.Tensor
    x: tf.Tensor
    p: tf.Tensor
    prior_x: tf.Tensor | None = None
    prior_p: tf.Tensor | None = None
    nis: tf.Tensor | None = None


class KalmanStream:
    """The per-frame Kalman filter loop (docs/reference.md §4): restart from the measurement at a
    sequence start, else predict by the flow and update with the measurement."""

    def __init__(self, nis=False, nis_threshold=NIS_THRESHOLD, prior_variance="warped_sigma",
                 process_noise_scale=1.0):
        self.nis, self.nis_threshold = bool(nis), float(nis_threshold)
        options = _checked(prior_variance, process_noise_scale)
        self.prior_variance, self.process_noise_scale = options["prior_variance"], options["process_noise_scale"]
        spec = [tf.TensorSpec([1, None, None, c], tf.float32) for c in (3, 1, 2, 1, 3, 1)]
        self._step = tf.function(self._filter_step, input_signature=spec)
        batch = [tf.TensorSpec([None, None, None, c], tf.float32) for c in (3, 1, 2, 1, 3, 1)]
        self._batch = tf.function(self._filter_frames, input_signature=[*batch, tf.TensorSpec([None], tf.bool)])
        self.state = None

    def _filter_step(self, post_x, post_p, flow, q, z, r):
        prior_x, prior_p = kf.predict(post_x, post_p, flow, q, self.prior_variance, self.process_noise_scale)
        nis = kf.nis(prior_x, prior_p, z, r)
        x, p = kf.update(prior_x, prior_p, z, r)
        # The NIS test changes what is shown, not the state carried to the next frame (as the original).
        shown = kf.nis_output(x, prior_x, prior_p, z, r, self.nis_threshold) if self.nis else x
        return prior_x, prior_p, x, p, nis, shown

    def _filter_frames(self, post_x, post_p, flow, q, z, r, new_sequence):
        """The frames of a batch in order, in one graph: the same step as `_filter_step` per frame."""
        n = tf.shape(z)[0]
        arrays = [tf.TensorArray(tf.float32, size=n, element_shape=tf.TensorShape([None, None, c]))
                  for c in (3, 1, 3, 1, 1)]  # shown, p, prior_x, prior_p, nis
        x, p = post_x, post_p
        for i in tf.range(n):
            zi, ri = z[i:i + 1], r[i:i + 1]
            if new_sequence[i]:
                out = (zi, ri, tf.zeros_like(zi), tf.zeros_like(ri), tf.zeros_like(ri), zi, ri)
            else:
                prior_x, prior_p, xi, pi, nis, shown = self._filter_step(x, p, flow[i:i + 1], q[i:i + 1], zi, ri)
                out = (shown, pi, prior_x, prior_p, nis, xi, pi)
            arrays = [a.write(i, v[0]) for a, v in zip(arrays, out[:5])]
            x, p = out[5], out[6]
        return (*[a.stack() for a in arrays], x, p)

    def reset(self):
        self.state = None

    def filter_frames(self, z, r, flow, q, new_sequence):
        """The filter over B consecutive frames in one traced call (kfnet/test.py): maps [B, h, w, ·]
        as `filter`'s, new_sequence [B] bool (the first frame always starts one when there is no
        state). Returns numpy (shown [B,h,w,3], p [B,h,w,1], prior_x, prior_p, nis [B,h,w,1], starts
        [B] bool: the frames that restarted the filter, whose prior and NIS maps are zeros). The same
        numbers as `filter` frame by frame."""
        new = np.asarray(new_sequence, bool).copy()
        if self.state is None or tuple(self.state[0].shape[1:3]) != tuple(z.shape[1:3]):
            new[0] = True
            state = (z[:1], r[:1])
        else:
            state = self.state
        *maps, x, p = self._batch(state[0], state[1], flow, q, z, r, tf.constant(new))
        self.state = (x, p)
        return (*[m.numpy() for m in maps], new)

    def filter(self, z, r, flow, q, new_sequence=False):
        """FilterStep of one frame: measurement z [1,h,w,3], R [1,h,w,1]; flow [1,h,w,2] from the
        previous frame and its process noise q = σ_q² [1,h,w,1] (ignored at a sequence start)."""
        if new_sequence or self.state is None:
            self.state = (z, r)
            return FilterStep(shown=z, x=z, p=r)
        prior_x, prior_p, x, p, nis, shown = self._step(self.state[0], self.state[1], flow, q, z, r)
        self.state = (x, p)
        return FilterStep(shown=shown, x=x, p=p, prior_x=prior_x, prior_p=prior_p, nis=nis)


@dataclass
class Result:
    """One frame's relocalization; maps in world coordinates (metres), σ in metres.

    pose: camera-to-world 4×4, or None with `failure` saying why. coords [h,w,3] and sigma
    [h,w,1]: the posterior (with nis=True, the measurement where the innovation test fails;
    σ stays the posterior's). measurement [h,w,3], measurement_sigma [h,w,1]: SCoordNet's.
    prior / prior_sigma: the prediction (None at a sequence start). inliers: PnP inliers.
    time_ms: the whole step (networks + filter + PnP). index: frames stepped before this one."""

    pose: np.ndarray | None
    failure: str | None
    coords: np.ndarray
    sigma: np.ndarray
    measurement: np.ndarray
    measurement_sigma: np.ndarray
    prior: np.ndarray | None
    prior_sigma: np.ndarray | None
    inliers: int
    time_ms: float
    new_sequence: bool
    index: int

    def coord_output(self):
        """[h, w, 4] float32 as in coord_<k>.npy: world x, y, z, confidence 1/σ."""
        return formats.coord_output(self.coords, self.sigma)


def load_kfnet(model_folder, image_hw=(64, 64), cfg_full=None, step=None, mixed_precision=False):
    """(KFNet with both networks loaded, checkpoint path) from a KFNet model folder of this
    project or an original TF1 release; image_hw only sizes the dummy pass that builds them.
    mixed_precision: the networks compute in bfloat16 (CPU) / float16 (GPU), outputs float32."""
    nets, ckpt = build_networks(model_folder, {
        "scoordnet": lambda w: SCoordNet(width=w).build_for(image_hw),
        "oflownet": lambda w: OFlowNet(width=w).build_for(image_hw)}, cfg_full, step=step,
        mixed_precision=mixed_precision)
    return KFNet(nets["scoordnet"], nets["oflownet"]), ckpt


def _matrix(value, name):
    if value is None:
        return None
    if isinstance(value, (str, Path)):
        return read_matrix_file(value)
    m = np.asarray(value, dtype=np.float64)
    if m.shape != {"transform": (4, 4), "intrinsics": (3, 3)}[name]:
        raise ValueError(f"{name} must be {'4×4' if name == 'transform' else '3×3'}, got {m.shape}")
    return m


class Relocalizer:
    """KFNet as a stream: `step(image)` per RGB frame, `reset()` at a new sequence.

    model: a KFNet. intrinsics: 3×3 camera matrix of the images (None: no PnP, no pose).
    transform: the scene's 4×4 world → normalized frame (transform.txt; None: identity).
    nis, nis_threshold: the innovation test on the output (docs/reference.md §4).
    prior_variance, process_noise_scale: the prior's variance ("warped_sigma", the original's, or
    "mixture") and a factor on σ_q² (docs/reference.md §4; not in the original, test time only).
    pnp: keyword arguments for pnp.solve.solve_frame; frame k uses seed (seed, k), as
    pnp/solve.py does, k counting every frame stepped since construction.
    """

    def __init__(self, model, intrinsics=None, transform=None, nis=False, nis_threshold=NIS_THRESHOLD,
                 pnp=None, seed=0, prior_variance="warped_sigma", process_noise_scale=1.0):
        self.model = model
        self.K = _matrix(intrinsics, "intrinsics")
        self.transform = np.eye(4) if transform is None else _matrix(transform, "transform")
        self.to_world = invert_rigid(self.transform)
        self.stream = KalmanStream(nis, nis_threshold, prior_variance, process_noise_scale)
        self.pnp = dict(pnp or {})
        self.seed = seed
        self.checkpoint = None
        self.frames = 0
        self._passes = {}  # one traced network pass per image size
        self._feat_before = None

    @classmethod
    def load(cls, model_folder, config=None, intrinsics=None, nis=False, scene=None, transform=None,
             step=None, mixed_precision=False, **kwargs):
        """From a model folder (this project's KFNet run or an original TF1 release).

        config: a YAML config file (as --config), scene: a scene name (as --scene); they give
        the network widths of an original release and the default intrinsics. intrinsics: 3×3
        (overrides the config's). transform: 4×4 or a transform.txt path. step: checkpoint step.
        mixed_precision: the networks compute in bfloat16 on CPU, float16 on GPU; their outputs,
        the filter and PnP stay float32.
        """
        cfg = load_config(scene, config)
        model, ckpt = load_kfnet(model_folder, cfg_full=cfg, step=step, mixed_precision=mixed_precision)
        K = config_intrinsics(cfg) if intrinsics is None else intrinsics
        options = filter_options(stage_config(cfg, "kfnet"), kwargs.pop("prior_variance", None),
                                 kwargs.pop("process_noise_scale", None))
        reloc = cls(model, K, transform, nis=nis, **options, **kwargs)
        reloc.checkpoint = ckpt
        return reloc

    @property
    def nis(self):
        return self.stream.nis

    def reset(self):
        """The next frame starts a new sequence (the filter restarts from its measurement)."""
        self.stream.reset()
        self._feat_before = None

    def networks(self, images_bhw3):
        """Both networks over B consecutive frames, float32 [B, H, W, 3] in 0..255: (z, R, flow,
        q) with the flow of each frame from the one before (the first from the previous call's
        last frame). Maps [B, h, w, ·] in the normalized frame, variances σ²."""
        hw = tuple(int(d) for d in images_bhw3.shape[1:3])
        if hw[0] % 8 or hw[1] % 8:
            raise ValueError(f"image size {hw[1]}×{hw[0]} is not a multiple of 8")
        if hw not in self._passes:
            channels = self.model.oflownet.tower.channels
            model = self.model

            @tf.function(input_signature=[tf.TensorSpec([None, *hw, 3], tf.float32),
                                          tf.TensorSpec([1, hw[0] // 8, hw[1] // 8, channels], tf.float32)])
            def networks(images, feat_before):
                z, r, feats = model.networks(images)
                previous = tf.concat([feat_before, feats[:-1]], 0)
                flow, sigma_q = model.oflownet.flow_from_features(previous, feats)
                return z, r, feats, flow, tf.square(sigma_q)

            self._passes[hw] = networks
        feat_before = self._feat_before
        if feat_before is None or tuple(feat_before.shape[1:3]) != (hw[0] // 8, hw[1] // 8):
            feat_before = tf.zeros([1, hw[0] // 8, hw[1] // 8, self.model.oflownet.tower.channels])
        z, r, feats, flow, q = self._passes[hw](images_bhw3, feat_before)
        self._feat_before = feats[-1:]
        return z, r, flow, q

    def filter(self, z, r, flow, q, new_sequence=False):
        """The filter step of one frame (maps [1, h, w, ·]): see KalmanStream.filter."""
        return self.stream.filter(z, r, flow, q, new_sequence)

    def filter_frames(self, z, r, flow, q, new_sequence):
        """The filter over a batch of frames in one call: see KalmanStream.filter_frames."""
        return self.stream.filter_frames(z, r, flow, q, new_sequence)

    def world(self, x_hw3):
        """Normalized-frame coordinates [h, w, 3] → world coordinates, float32."""
        return transform_points(self.to_world, x_hw3).astype(np.float32)

    def step(self, image, new_sequence=False):
        """Result of one RGB frame, uint8 (or float 0..255) [H, W, 3]; new_sequence=True (or a
        reset() before, or a new image size) restarts the filter here."""
        t0 = time.perf_counter()
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be [H, W, 3], got shape {image.shape}")
        state = self.stream.state
        start = bool(new_sequence) or state is None or \
            tuple(state[0].shape[1:3]) != (image.shape[0] // 8, image.shape[1] // 8)  # a new image size
        if start:
            self.reset()
        z, r, flow, q = self.networks(tf.constant(image[None], tf.float32))
        out = self.filter(z, r, flow, q, start)
        coords = self.world(out.shown.numpy()[0])
        sigma = np.sqrt(out.p.numpy()[0])
        pose, failure, inliers = None, "no intrinsics given", 0
        if self.K is not None:
            conf = formats.coord_output(coords, sigma)
            pose, _, info = solve_frame(conf[..., :3], conf[..., 3], self.K, seed=(self.seed, self.frames),
                                        **self.pnp)
            failure, inliers = info["failure"], info["inliers"]
        prior = prior_sigma = None
        if out.prior_x is not None:
            prior, prior_sigma = self.world(out.prior_x.numpy()[0]), np.sqrt(out.prior_p.numpy()[0])
        result = Result(pose=pose, failure=failure, coords=coords, sigma=sigma,
                        measurement=self.world(z.numpy()[0]), measurement_sigma=np.sqrt(r.numpy()[0]),
                        prior=prior, prior_sigma=prior_sigma, inliers=inliers,
                        time_ms=1000.0 * (time.perf_counter() - t0), new_sequence=start, index=self.frames)
        self.frames += 1
        return result


def stream_label_errors(reloc, data, to_train_44=None, frames=None, batch_size=4):
    """{'measurement_coord_error', 'prior_…', 'posterior_…': [n] cm}: the first `frames` frames of a
    labelled input folder streamed through `reloc`'s networks and filter (restarting at each
    sequence start), each map against the labels (mapped by to_train_44 into the networks'
    normalized frame), over the valid cells. No prior at a sequence start. Stage 3's validation."""
    from common.data.pipelines import test_dataset
    from common.evaluation import label_errors_cm

    errors = {"measurement": [], "prior": [], "posterior": []}
    reloc.reset()
    for batch in test_dataset(data, batch_size, stop=frames):
        z, r, flow, q = reloc.networks(batch["image"])
        for i in range(len(batch["index"])):
            step = reloc.filter(z[i:i + 1], r[i:i + 1], flow[i:i + 1], q[i:i + 1],
                                bool(batch["new_sequence"][i]))
            gt, mask = batch["coords"][i:i + 1], batch["mask"][i:i + 1]
            maps = {"measurement": z[i:i + 1], "posterior": step.x}
            if step.prior_x is not None:
                maps["prior"] = step.prior_x
            for name, coords in maps.items():
                errors[name].append(label_errors_cm(coords, gt, mask, to_train_44))
    reloc.reset()
    return {f"{name}_coord_error": np.concatenate(e) if e else np.zeros(0) for name, e in errors.items()}
