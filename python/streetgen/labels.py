"""The Cityscapes train ids the generator draws (by name, from emaseg's class table), the
ignore label and a colour view of a label map."""
from __future__ import annotations

import numpy as np

from emaseg.classes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE


# Cityscapes train ids, by name from the class table.
(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN, VEGETATION, TERRAIN, SKY,
 PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE) = (CITYSCAPES_CLASSES.index(name) for name in (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"))
NUM_CLASSES = len(CITYSCAPES_CLASSES)
IGNORE = 255
HOOD_MAX_FRAC = 0.12       # ignore (ego hood) pixels only ever lie in this bottom fraction of rows


def colorize(lab: np.ndarray) -> np.ndarray:
    """BGR visualisation of a trainId map (ignore -> black)."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:NUM_CLASSES] = np.array(CITYSCAPES_PALETTE, np.uint8)[:, ::-1]
    return lut[lab]
