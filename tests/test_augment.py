"""Augmentation: every output image is a shift (within ±shift, background filled) or a mirror of
its input, checked against NumPy; choices vary per image and are fixed by the key; bad shapes
and shifts are rejected with the function's name."""

import jax
import numpy as np
import pytest

from jaxnets import augment


def _images(n=64, h=6, w=5, c=2, seed=0):
    return np.random.default_rng(seed).uniform(1.0, 2.0, (n, h, w, c)).astype(np.float32)  # no pixel equals fill


def _numpy_shift(image, dy, dx, fill):
    """The image moved down by dy and right by dx, ``fill`` where nothing was."""
    h, w, _ = image.shape
    out = np.full_like(image, fill)
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = image[max(-dy, 0):h - max(dy, 0),
                                                                      max(-dx, 0):w - max(dx, 0)]
    return out


def test_random_shift_moves_each_image_by_at_most_shift_pixels(key):
    x = _images()
    out = np.asarray(augment.random_shift(key, x, 2, fill=-3.0))
    assert out.shape == x.shape
    seen = set()
    for image, moved in zip(x, out):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if np.array_equal(moved, _numpy_shift(image, dy, dx, -3.0))]
        assert len(matches) == 1, "output is not a shift of its input within ±2 px"
        seen.add(matches[0])
    assert len(seen) >= 15  # 64 images over 25 possible shifts: the draws differ per image
    np.testing.assert_array_equal(augment.random_shift(key, x, 0), x)


def test_random_flip_mirrors_about_half_of_the_images(key):
    x = _images(n=400)
    out = np.asarray(augment.random_flip(key, x))
    mirrored = np.array([np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x)])
    unchanged = np.array([np.array_equal(o, i) for o, i in zip(out, x)])
    assert np.all(mirrored ^ unchanged)
    assert 160 < mirrored.sum() < 240  # Binomial(400, ½): mean 200, sd 10


def test_augment_is_fixed_by_the_key_and_composes_shift_then_flip(key):
    x = _images()
    a = augment.augment(key, x, shift=1, flip=True, fill=0.5)
    np.testing.assert_array_equal(a, augment.augment(key, x, shift=1, flip=True, fill=0.5))
    assert not np.array_equal(a, augment.augment(jax.random.PRNGKey(1), x, shift=1, flip=True, fill=0.5))
    shift_key, flip_key = jax.random.split(key)
    expected = augment.random_flip(flip_key, augment.random_shift(shift_key, x, 1, fill=0.5))
    np.testing.assert_array_equal(a, expected)
    np.testing.assert_array_equal(augment.augment(key, x), x)  # nothing asked: unchanged
    jitted = jax.jit(lambda k, v: augment.augment(k, v, shift=1, flip=True, fill=0.5))
    np.testing.assert_array_equal(jitted(key, x), a)


def test_bad_input_is_rejected_with_the_function_name(key):
    with pytest.raises(ValueError, match=r"random_shift: expected images of shape .* got \(6, 5\)"):
        augment.random_shift(key, np.zeros((6, 5)), 1)
    with pytest.raises(ValueError, match="random_flip: expected images"):
        augment.random_flip(key, np.zeros((2, 6, 5)))
    with pytest.raises(ValueError, match="shift must be a non-negative int, got -1"):
        augment.random_shift(key, _images(), -1)


def test_gaussian_noise_has_the_asked_spread_and_is_fixed_by_the_key(key):
    x = np.zeros((2000, 3), np.float32)
    noisy = np.asarray(augment.gaussian_noise(key, x, 0.5))
    assert abs(noisy.std() - 0.5) < 0.02 and abs(noisy.mean()) < 0.02
    np.testing.assert_array_equal(noisy, augment.gaussian_noise(key, x, 0.5))
    assert not np.array_equal(noisy, augment.gaussian_noise(jax.random.PRNGKey(9), x, 0.5))
    np.testing.assert_array_equal(augment.gaussian_noise(key, x, 0.0), x)
    with pytest.raises(ValueError, match="std must be >= 0"):
        augment.gaussian_noise(key, x, -1.0)
    images = _images()  # noise after shifts and flips, in augment()
    out = np.asarray(augment.augment(key, images, noise=0.1))
    assert 0.05 < float(np.std(out - images)) < 0.15
