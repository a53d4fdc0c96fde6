"""Photometric effects, applied to the image only (labels never change): lighting, white
balance, per-class texture, cast shadows, sensor noise and blur."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .labels import (
    BICYCLE, BUILDING, BUS, CAR, FENCE, MOTORCYCLE, PERSON, POLE, RIDER, ROAD, SIDEWALK, SKY, TERRAIN,
    TRAFFIC_LIGHT, TRAFFIC_SIGN, TRAIN, TRUCK, VEGETATION, WALL)


# ----------------------------------------------------------------------------------------------
# Photometric effects (image only)

# How much fine texture each class gets: foliage and grass are busy, sky and signs smooth.
_TEX_AMP = np.full(256, 3.0, np.float32)
for _c, _a in {ROAD: 7, SIDEWALK: 6, BUILDING: 6, WALL: 8, FENCE: 5, POLE: 3, TRAFFIC_LIGHT: 2,
               TRAFFIC_SIGN: 2, VEGETATION: 20, TERRAIN: 15, SKY: 1.5, PERSON: 4, RIDER: 4, CAR: 3,
               TRUCK: 4, BUS: 3, TRAIN: 3, MOTORCYCLE: 3, BICYCLE: 3}.items():
    _TEX_AMP[_c] = _a
_GROUND_U8 = np.zeros(256, np.uint8)
_GROUND_U8[[ROAD, SIDEWALK, TERRAIN]] = 1
_TILE = (512, 1024)


@lru_cache(maxsize=1)
def _noise_tiles() -> tuple[np.ndarray, np.ndarray]:
    """Fixed periodic noise (fixed seed, so outputs stay deterministic): texture (h, w) and sensor
    (h, w, 3), unit sigma. Sampling fresh full-resolution noise per image would dominate the run
    time; a random crop of a fixed tile looks just as random."""
    rng = np.random.default_rng(20240917)
    th, tw = _TILE
    fine = rng.standard_normal((th, tw), dtype=np.float32)
    coarse = cv2.resize(rng.standard_normal((th // 4, tw // 4), dtype=np.float32), (tw, th),
                        interpolation=cv2.INTER_LINEAR)
    tex = 0.55 * fine + 1.3 * coarse
    tex /= tex.std()
    return tex, rng.standard_normal((th, tw, 3), dtype=np.float32)


@lru_cache(maxsize=2)
def _noise_bank(ny: int = 1, nx: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The tiles repeated (ny + 1) x (nx + 1) times, so a crop of up to ny x nx tiles at any
    offset is a plain slice. Values depend only on (y mod tile, x mod tile): deterministic."""
    tex, sensor = _noise_tiles()
    return np.tile(tex, (ny + 1, nx + 1)), np.tile(sensor, (ny + 1, nx + 1, 1))


def _crop(tile: np.ndarray, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    th, tw = _TILE
    oy, ox = int(rng.integers(th)), int(rng.integers(tw))
    return tile[oy:oy + h, ox:ox + w]


@dataclass
class Photometric:
    """Per-scene lighting and noise parameters (fixed for a whole video)."""
    lut: np.ndarray         # (256, 1, 3) float32: per-channel contrast, white balance, brightness
    gain_lowres: np.ndarray # low-frequency illumination field (gradient + blotches)
    tex_amp: np.ndarray     # (256,) float32 texture amplitude per class
    sensor: float           # sensor noise sigma
    blur: float             # Gaussian blur sigma (0: none)
    shadow: float           # brightness factor inside cast shadows

    @staticmethod
    def sample(rng: np.random.Generator) -> "Photometric":
        contrast, brightness = rng.uniform(0.75, 1.2), rng.uniform(-30, 25)
        balance = rng.uniform(0.93, 1.07, 3)
        x = np.arange(256, dtype=np.float64)[:, None]
        lut = ((x - 128) * contrast + 128 + brightness) * balance
        gy, gx = 9, 17
        yy, xx = np.mgrid[0:gy, 0:gx]
        ang = rng.uniform(0, 2 * math.pi)
        ramp = np.cos(ang) * (xx / (gx - 1) - 0.5) + np.sin(ang) * (yy / (gy - 1) - 0.5)
        field_ = 1.0 + rng.uniform(0, 0.35) * ramp + rng.uniform(0.02, 0.08) * rng.standard_normal((gy, gx))
        return Photometric(lut.astype(np.float32)[:, None, :], field_.astype(np.float32),
                           _TEX_AMP * np.float32(rng.uniform(0.6, 1.4)), rng.uniform(1.0, 6.0),
                           rng.uniform(0.5, 1.4) if rng.random() < 0.3 else 0.0, rng.uniform(0.45, 0.7))

    def apply(self, rng: np.random.Generator, img: np.ndarray, lab: np.ndarray, shadow: np.ndarray,
              tex_rng: np.random.Generator | None = None) -> np.ndarray:
        """out = LUT(img) * gain + texture(class) + sensor noise, then maybe blur. cv2 ops on
        whole frames: several times faster than the equivalent numpy broadcasting. `tex_rng`
        places the texture (a video keeps it still; only sensor noise changes per frame)."""
        h, w = lab.shape
        tex, sensor = _noise_bank(-(-h // _TILE[0]), -(-w // _TILE[1]))
        gain = cv2.resize(self.gain_lowres, (w, h), interpolation=cv2.INTER_LINEAR)
        if shadow.any():
            ground = cv2.bitwise_and(shadow, cv2.LUT(lab, _GROUND_U8))
            factor = np.ones(256, np.float32)
            factor[1] = self.shadow
            cv2.multiply(gain, cv2.LUT(ground, factor), dst=gain)
        out = cv2.LUT(img, self.lut)
        cv2.multiply(out, cv2.cvtColor(gain, cv2.COLOR_GRAY2BGR), dst=out)
        noise = cv2.multiply(_crop(tex, tex_rng or rng, h, w), cv2.LUT(lab, self.tex_amp))
        noise = cv2.cvtColor(noise, cv2.COLOR_GRAY2BGR)
        cv2.scaleAdd(_crop(sensor, rng, h, w), self.sensor, noise, dst=noise)
        cv2.add(out, noise, dst=out)
        cv2.max(out, 0.0, dst=out)
        res = cv2.convertScaleAbs(out)  # values are >= 0 here, so this only rounds and saturates
        if self.blur:
            res = cv2.GaussianBlur(res, (0, 0), self.blur)
        return res
