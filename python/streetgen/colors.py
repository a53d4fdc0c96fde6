"""Colours of the scene's materials, written as RGB for readability and returned as BGR (the
images are BGR), plus the small helpers that vary, darken and blend them."""
from __future__ import annotations

from typing import Sequence

import numpy as np



Color = tuple[int, int, int]


# ----------------------------------------------------------------------------------------------
# Colours (written as RGB for readability, stored as BGR because the images are BGR)

def to_bgr(rgb: Sequence[float]) -> Color:
    return (int(rgb[2]), int(rgb[1]), int(rgb[0]))


def jitter(rng: np.random.Generator, rgb: Sequence[float], amount: float = 10.0) -> Color:
    """`rgb` with a little per-channel noise, as a BGR tuple (plain Python: called thousands of
    times per scene, where small-array numpy would cost more than the arithmetic)."""
    n = rng.normal(0.0, amount, 3).tolist()
    return (min(255, max(0, int(rgb[2] + n[2]))), min(255, max(0, int(rgb[1] + n[1]))),
            min(255, max(0, int(rgb[0] + n[0]))))


def pick(rng: np.random.Generator, seq: Sequence):
    return seq[int(rng.integers(len(seq)))]


def shade(c: Color, k: float) -> Color:
    return (min(255, int(c[0] * k)), min(255, int(c[1] * k)), min(255, int(c[2] * k)))


def mix(a: Color, b: Color, w: float) -> Color:
    """(1 - w) * a + w * b: used for atmospheric haze on distant things."""
    return tuple(int(x * (1 - w) + y * w) for x, y in zip(a, b))  # type: ignore[return-value]


ROAD_RGB = [(88, 88, 92), (72, 73, 76), (104, 102, 98), (96, 90, 94), (80, 82, 80)]
SIDEWALK_RGB = [(172, 170, 165), (150, 150, 152), (192, 180, 160), (168, 124, 112), (140, 136, 128)]
BUILDING_RGB = [(206, 186, 150), (226, 220, 208), (140, 140, 146), (152, 78, 58), (186, 160, 170),
                (160, 180, 192), (112, 102, 92), (202, 170, 120), (172, 112, 82), (236, 226, 190)]
WINDOW_RGB = [(44, 54, 70), (70, 86, 102), (30, 34, 40), (108, 128, 150), (60, 62, 58)]
WALL_RGB = [(162, 160, 154), (176, 166, 146), (130, 122, 112), (142, 82, 62), (200, 196, 186)]
FENCE_RGB = [(132, 96, 60), (58, 86, 66), (116, 116, 116), (212, 210, 204), (42, 42, 44)]
POLE_RGB = [(122, 122, 124), (154, 154, 150), (50, 66, 56), (44, 44, 46)]
VEG_RGB = [(62, 102, 36), (46, 86, 30), (86, 122, 46), (36, 72, 38), (102, 126, 52), (70, 96, 50)]
TERRAIN_RGB = [(112, 146, 62), (136, 152, 76), (152, 138, 92), (122, 106, 76), (96, 130, 60)]
CAR_RGB = [(22, 22, 24), (232, 232, 232), (172, 174, 178), (112, 112, 118), (162, 26, 26),
           (26, 52, 122), (22, 30, 62), (32, 82, 52), (222, 192, 42), (192, 92, 32), (92, 22, 32)]
BUS_RGB = [(232, 196, 30), (200, 40, 36), (30, 80, 170), (236, 236, 230), (40, 140, 80)]
SKIN_RGB = [(250, 214, 180), (226, 180, 140), (182, 132, 96), (122, 82, 56)]
HAIR_RGB = [(30, 24, 20), (70, 46, 30), (150, 110, 60), (200, 180, 130), (120, 120, 120)]
