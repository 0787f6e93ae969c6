"""The onnx backend's preparation of infrared night pictures: grey and noisy ones only."""

from __future__ import annotations

import cv2
import numpy as np

from detectors.backends.onnx import night_picture, noise_sigma


def _street(rng: np.random.Generator) -> np.ndarray:
    """A grey street-like picture, 768x576: 16 px patches of grey levels 80-180."""
    patches = rng.integers(80, 180, (36, 48), np.uint8)
    return np.repeat(np.repeat(patches, 16, axis=0), 16, axis=1)


def _stretched(grey: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(grey, (1, 99))
    return (grey.astype(np.float32) - lo) / (hi - lo)


def test_infrared_night_picture_is_smoothed_and_stretched() -> None:
    rng = np.random.default_rng(0)
    clean = _street(rng)
    # as a camera sends it at night: 45 % contrast, a grey offset, 9 grey levels of sensor noise
    night = np.clip(clean * 0.45 + 25 + rng.normal(0, 9, clean.shape), 0, 255).astype(np.uint8)
    assert 8 <= noise_sigma(night) <= 10
    out = night_picture(cv2.cvtColor(night, cv2.COLOR_GRAY2BGR))
    assert out.shape == (576, 768, 3) and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    lo, hi = np.percentile(out[..., 0], (1, 99))
    assert lo <= 10 and hi >= 245  # the full range (the 1st and 99th percentiles of a sample)
    # and less noisy: nearer the clean street than the raw picture is (both at full range)
    truth = _stretched(clean)
    assert np.abs(out[..., 0] / 255.0 - truth).mean() < 0.7 * np.abs(_stretched(night) - truth).mean()


def test_colour_and_clean_grey_pictures_are_left_alone() -> None:
    rng = np.random.default_rng(1)
    grey = cv2.cvtColor(_street(rng), cv2.COLOR_GRAY2BGR)
    assert noise_sigma(grey[..., 0]) == 0.0
    assert night_picture(grey) is grey  # grey but clean: a test pattern, a generated scene
    colour = grey.astype(np.int16) + rng.normal(0, 9, grey.shape).astype(np.int16)
    colour[..., 2] += 40  # a reddish street in daylight, as noisy as the night one
    colour_u8 = np.clip(colour, 0, 255).astype(np.uint8)
    assert night_picture(colour_u8) is colour_u8
