"""Fixtures for the detectors tests: real footage decoded once per session."""

from __future__ import annotations

import av
import numpy as np
import pytest

from tests.detectors.support import asset


@pytest.fixture(scope="session")
def vtest_2fps() -> list[tuple[np.ndarray, float]]:
    """vtest.avi (768x576, 10 fps) sampled at 2 fps, as the worker samples a camera."""
    path = asset("vtest.avi")
    frames = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % 5 == 0:
                frames.append((frame.to_ndarray(format="bgr24"), i / 10.0))
    assert len(frames) == 159
    return frames
