"""bilinear_sample on hand-computed cases: grid points, half points, off-map and partly off-map samples."""

import numpy as np
import tensorflow as tf

from common.geometry import bilinear_sample

# 2 rows × 3 columns, two channels (the second is the first plus 100).
IMAGE = np.array([[1.0, 2.0, 4.0], [8.0, 16.0, 32.0]], np.float32)
IMAGE_1HW2 = np.stack([IMAGE, IMAGE + 100.0], axis=-1)[None]


def sample(points):
    xy = np.asarray(points, np.float32).reshape(1, 1, -1, 2)
    return bilinear_sample(IMAGE_1HW2, xy).numpy().reshape(-1, 2)


def test_integer_points_return_the_pixel():
    points = [(x, y) for y in range(2) for x in range(3)]
    out = sample(points)
    np.testing.assert_array_equal(out[:, 0], IMAGE.ravel())
    np.testing.assert_array_equal(out[:, 1], IMAGE.ravel() + 100.0)


def test_half_points_are_neighbour_means():
    out = sample([(0.5, 0.0), (1.0, 0.5), (0.5, 0.5), (1.5, 0.5)])[:, 0]
    np.testing.assert_allclose(out, [1.5, 9.0, (1 + 2 + 8 + 16) / 4, (2 + 4 + 16 + 32) / 4], rtol=1e-6)


def test_general_point_weights():
    # x = 1.25, y = 0.75: rows 0/1 weighted 0.25/0.75, columns 1/2 weighted 0.75/0.25.
    expected = 0.25 * (0.75 * 2 + 0.25 * 4) + 0.75 * (0.75 * 16 + 0.25 * 32)
    np.testing.assert_allclose(sample([(1.25, 0.75)])[0, 0], expected, rtol=1e-6)


def test_outside_points_are_zero():
    out = sample([(-1.0, 0.0), (3.0, 1.0), (0.0, -1.0), (1.0, 2.0), (-5.0, -7.0), (10.5, 0.5)])
    np.testing.assert_array_equal(out, 0.0)


def test_partially_outside_points_mix_with_zero():
    out = sample([(-0.5, 0.0), (2.5, 1.0), (0.0, -0.25), (-0.25, 1.5)])[:, 0]
    np.testing.assert_allclose(out, [0.5 * 1, 0.5 * 32, 0.75 * 1, 0.75 * 0.5 * 8], rtol=1e-6)


def test_batch_items_sample_their_own_image():
    images = np.stack([IMAGE_1HW2[0], -IMAGE_1HW2[0]])
    xy = np.array([[[[2.0, 1.0]]], [[[2.0, 1.0]]]], np.float32)
    out = bilinear_sample(images, xy).numpy()
    np.testing.assert_array_equal(out[:, 0, 0, 0], [32.0, -32.0])


def test_gradients_wrt_image_and_points():
    image = tf.constant(IMAGE_1HW2)
    xy = tf.constant([[[[0.25, 0.0]]]])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([image, xy])
        value = bilinear_sample(image, xy)[..., 0]
    d_image = tape.gradient(value, image).numpy()[0, ..., 0]
    expected = np.zeros_like(IMAGE)
    expected[0, 0], expected[0, 1] = 0.75, 0.25
    np.testing.assert_allclose(d_image, expected, rtol=1e-6)
    # ∂/∂x = I(1, 0) − I(0, 0); ∂/∂y = 0.75·(I(0,1) − I(0,0)) + 0.25·(I(1,1) − I(1,0)).
    d_xy = tape.gradient(value, xy).numpy().ravel()
    np.testing.assert_allclose(d_xy, [2.0 - 1.0, 0.75 * (8 - 1) + 0.25 * (16 - 2)], rtol=1e-6)
