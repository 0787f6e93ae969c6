"""The classic backend under headlights at dusk and with passers-by in front of what stands (the
quality suite's scenes, through the worker's pipeline): pools of light sweeping over the street every
9 s are neither people nor a reason to forget a stall; someone walking in front of a pile of goods is
not the pile fidgeting."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.backends import ClassicConfig, build_detector
from detectors.scenes import Props, condition_scenes, play


@pytest.mark.slow
@pytest.mark.parametrize(
    ("condition", "index", "name", "rules"),
    [
        # the light flattened the stall's outline for a frame: pieces of it were learnt away as
        # ghosts and the rest followed (never reported)
        ("headlights", 1, "stall on the road", ["road_occupation"]),
        # the pool of light the background learnt while warming up stayed as a static blob on the
        # grass: two more "people" next to three chatting, a crowding event where there is no crowd
        ("headlights", 3, "negative", []),
        # passers-by every 6 s, wholly in front of the pile: their changes counted as fidgeting and
        # the pile's standing clock kept restarting (never reported)
        ("occlusion", 1, "pile on the road", ["road_occupation"]),
        # and people talking by the sign on the road, with walkers passing them, still fidget
        ("clear", 0, "crate in the fire lane", ["fire_lane_blockage"]),
    ],
)
def test_light_and_passers_by_neither_hide_a_thing_nor_make_one(
    footage: list[np.ndarray], props: Props, condition: str, index: int, name: str, rules: list[str]
) -> None:
    scene = condition_scenes(condition, props)[index]
    assert scene.name == f"{condition}: {name}"
    run = play(scene, footage, build_detector(ClassicConfig()), person_area=props.person_area)
    assert run.frames > 80
    started = [(e.rule, e.t) for e in run.events if e.type == "started"]
    assert [rule for rule, _ in started] == rules, started
    for _, t in started:
        assert 8 + 10 <= t <= 8 + 10 + 5, started  # put down at 8 s, dwell 10 s
