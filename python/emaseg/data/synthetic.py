"""Procedural street scenes with pixel-exact Cityscapes trainId labels.

No real dataset can be downloaded where this project is built, so it renders its own: a straight
street seen by a car-mounted pinhole camera, with lane markings, kerbs, sidewalks, buildings with
windows, walls, fences, hedges, trees, grass, poles, traffic signs and lights, parked and moving
vehicles (cars, vans, trucks, buses, trams), pedestrians, cyclists and motorcyclists.

How labels stay exact: everything is drawn by `Canvas`, which fills the SAME polygon / ellipse /
line into the image and into the label map in one call, back to front (painter's algorithm), so a
pixel drawn as a car is labelled car. Photometric effects (lighting, texture noise, sensor noise,
blur) are applied to the image only afterwards; they change colours, never labels.

Ignore label (255): used for exactly one thing, the ego vehicle's hood, a smooth bump rising from
the image bottom in about half of the scenes, never higher than `HOOD_MAX_FRAC` of the height
(Cityscapes also labels its ego vehicle as ignore). Nothing else is ever labelled 255.

Determinism: a scene is a pure function of the `np.random.Generator` passed in; `write_dataset`
seeds image i of a split from (seed, split, i), so adding images never changes earlier ones.
A video is a camera driving down one street, content generated lazily in 40 m chunks, each chunk
seeded from (seed, stream, chunk index), so frame k does not depend on which frames ran before.

World coordinates (metres): x to the right, y up, z forward along the road; the road centre line
is x = 0 and the road surface y = 0.
"""
from __future__ import annotations

import math
import errno
import os
import re
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np

from ..atomic import atomic_path, write_atomic
from ..classes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE

# Cityscapes train ids, by name from the class table.
(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN, VEGETATION, TERRAIN, SKY,
 PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE) = (CITYSCAPES_CLASSES.index(name) for name in (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"))
NUM_CLASSES = len(CITYSCAPES_CLASSES)
IGNORE = 255
HOOD_MAX_FRAC = 0.12       # ignore (ego hood) pixels only ever lie in this bottom fraction of rows
MIN_SIZE, MAX_SIZE = 64, 4096
SPLIT_CODES = {"train": 0, "val": 1}
_VIDEO_WORLD, _VIDEO_FRAME, _VIDEO_TEXTURE = 2, 3, 4  # seed-stream codes, distinct from the splits

NEAR = 0.5                 # near clipping plane (m): geometry closer than this is cut away
SHIFT = 3                  # fixed-point bits for cv2 drawing: sub-pixel edges, smooth video motion
_ONE = float(1 << SHIFT)
CHUNK = 40.0               # length (m) of one lazily generated piece of street
CHUNK_ORIGIN = -2.0        # chunk 0 starts just behind a still image's camera (z = 0): nothing
                           # further back can be seen, so no chunk behind it is ever generated
FAR_STREET = 140.0         # small objects beyond this are a few pixels tall: not generated

Color = tuple[int, int, int]


# ----------------------------------------------------------------------------------------------
# Colours (written as RGB for readability, stored as BGR because the images are BGR)

def _bgr(rgb: Sequence[float]) -> Color:
    return (int(rgb[2]), int(rgb[1]), int(rgb[0]))


def _jit(rng: np.random.Generator, rgb: Sequence[float], amount: float = 10.0) -> Color:
    """`rgb` with a little per-channel noise, as a BGR tuple (plain Python: called thousands of
    times per scene, where small-array numpy would cost more than the arithmetic)."""
    n = rng.normal(0.0, amount, 3).tolist()
    return (min(255, max(0, int(rgb[2] + n[2]))), min(255, max(0, int(rgb[1] + n[1]))),
            min(255, max(0, int(rgb[0] + n[0]))))


def _pick(rng: np.random.Generator, seq: Sequence):
    return seq[int(rng.integers(len(seq)))]


def _shade(c: Color, k: float) -> Color:
    return (min(255, int(c[0] * k)), min(255, int(c[1] * k)), min(255, int(c[2] * k)))


def _mix(a: Color, b: Color, w: float) -> Color:
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


# ----------------------------------------------------------------------------------------------
# Drawing: one call fills image and labels (and, in record mode, the current part's mask)

@dataclass
class Part:
    """One drawn piece of a scene (record mode only): what it was, its class, the pixels the
    drawing calls covered (before later parts painted over them) and the colours used."""
    kind: str
    cls: int
    mask: np.ndarray
    colors: set = field(default_factory=set)


def _clip_poly(poly: np.ndarray, axis: int, bound: float, keep_above: bool = True) -> np.ndarray:
    """Sutherland-Hodgman: the part of a convex-or-not polygon (k, d) on one side of a plane."""
    out = []
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        ina = (a[axis] >= bound) == keep_above
        inb = (b[axis] >= bound) == keep_above
        if ina:
            out.append(a)
        if ina != inb:
            out.append(a + (bound - a[axis]) / (b[axis] - a[axis]) * (b - a))
    return np.array(out) if out else np.empty((0, poly.shape[1]))


class Canvas:
    """Image (BGR), label map and shadow mask drawn together with identical geometry."""

    def __init__(self, height: int, width: int, record: bool = False) -> None:
        self.h, self.w = height, width
        self.img = np.zeros((height, width, 3), np.uint8)
        self.lab = np.zeros((height, width), np.uint8)
        self.shadow = np.zeros((height, width), np.uint8)
        self.record = record
        self.parts: list[Part] = []
        self.cls = 0
        # cv2 shifts coordinates left internally; keeping them within a few image sizes avoids
        # integer overflow for geometry that projects far outside the frame.
        self._lim = 4.0 * max(height, width)
        self._part: Part | None = None

    def begin(self, kind: str, cls: int) -> None:
        """Subsequent drawing calls are labelled `cls` (and recorded as one part)."""
        self.cls = int(cls)
        if self.record:
            self._part = Part(kind, int(cls), np.zeros((self.h, self.w), np.uint8))
            self.parts.append(self._part)

    def _fixed(self, polys: np.ndarray | list[np.ndarray]) -> list[np.ndarray]:
        if isinstance(polys, np.ndarray):
            if polys.size == 0:
                return []
            if np.abs(polys).max() <= self._lim:
                return list(np.rint(polys * _ONE).astype(np.int32))
        out = []
        lim = self._lim
        for p in polys:
            if np.abs(p).max() > lim:
                for axis in (0, 1):
                    p = _clip_poly(_clip_poly(p, axis, -lim, True), axis, lim, False)
            if len(p) >= 3:
                out.append(np.rint(p * _ONE).astype(np.int32))
        return out

    def to_fixed(self, pts: np.ndarray) -> np.ndarray | None:
        """Float pixels -> cv2 fixed point, or None if some point is too far out for that."""
        if pts.size and np.abs(pts).max() <= self._lim:
            return np.rint(pts * _ONE).astype(np.int32)
        return None

    def fill(self, polys: np.ndarray | list[np.ndarray], color: Color) -> None:
        """Fill polygons given in float pixels. One call's polygons must not overlap (cv2 XORs)."""
        pts = self._fixed(polys)
        if len(pts):
            self.fill_fixed(pts, color)

    def fill_fixed(self, pts: np.ndarray | list[np.ndarray], color: Color) -> None:
        """Fill polygons already in fixed point ((n, k, 2) int32 or a list of (k, 2))."""
        cv2.fillPoly(self.img, pts, color, cv2.LINE_8, SHIFT)
        cv2.fillPoly(self.lab, pts, self.cls, cv2.LINE_8, SHIFT)
        if self._part is not None:
            cv2.fillPoly(self._part.mask, pts, 1, cv2.LINE_8, SHIFT)
            self._part.colors.add(color)

    def ellipse(self, cx: float, cy: float, ax: float, ay: float, angle: float, color: Color,
                thickness: int = -1) -> None:
        if max(ax, ay) < 0.3 or abs(cx) > self._lim or abs(cy) > self._lim:
            return
        c = (int(round(cx * _ONE)), int(round(cy * _ONE)))
        a = (int(round(min(ax, self._lim) * _ONE)), int(round(min(ay, self._lim) * _ONE)))
        args = (c, a, angle, 0, 360)
        cv2.ellipse(self.img, *args, color, thickness, cv2.LINE_8, SHIFT)
        cv2.ellipse(self.lab, *args, self.cls, thickness, cv2.LINE_8, SHIFT)
        if self._part is not None:
            cv2.ellipse(self._part.mask, *args, 1, thickness, cv2.LINE_8, SHIFT)
            self._part.colors.add(color)

    def line(self, p: Sequence[float], q: Sequence[float], color: Color, thickness: int) -> None:
        if max(abs(p[0]), abs(p[1]), abs(q[0]), abs(q[1])) > self._lim:
            return
        a = (int(round(p[0] * _ONE)), int(round(p[1] * _ONE)))
        b = (int(round(q[0] * _ONE)), int(round(q[1] * _ONE)))
        cv2.line(self.img, a, b, color, thickness, cv2.LINE_8, SHIFT)
        cv2.line(self.lab, a, b, self.cls, thickness, cv2.LINE_8, SHIFT)
        if self._part is not None:
            cv2.line(self._part.mask, a, b, 1, thickness, cv2.LINE_8, SHIFT)
            self._part.colors.add(color)

    def rows(self, gradient: np.ndarray) -> None:
        """Paint the whole frame with a per-row colour gradient (the sky background)."""
        self.img = cv2.resize(gradient[:, None, :], (self.w, self.h), interpolation=cv2.INTER_NEAREST)
        self.lab[:] = self.cls
        if self._part is not None:
            self._part.mask[:] = 1
            self._part.colors = None  # type: ignore[assignment]  # a gradient: any colour

    def shade(self, polys: list[np.ndarray]) -> None:
        """Mark cast-shadow polygons (applied to ground pixels by the photometric step)."""
        pts = self._fixed(polys)
        if pts:
            for p in pts:  # one by one: shadows may overlap and cv2 would XOR them
                cv2.fillPoly(self.shadow, [p], 1, cv2.LINE_8, SHIFT)


# ----------------------------------------------------------------------------------------------
# Camera and world-space drawing helpers

class Camera:
    """Pinhole camera at height `cam_h` above the road, yawed and rolled by small angles."""

    def __init__(self, width: int, height: int, f: float, horizon: float, cam_h: float,
                 x: float = 0.0, z: float = 0.0, yaw: float = 0.0, roll: float = 0.0) -> None:
        self.width, self.height, self.f, self.horizon, self.cam_h = width, height, f, horizon, cam_h
        self.x, self.z, self.yaw, self.roll = x, z, yaw, roll
        cy, sy = math.cos(yaw), math.sin(yaw)
        self.cr, self.sr = cr, sr = math.cos(roll), math.sin(roll)
        # Affine maps as matrices: one matmul per batch of points beats per-axis numpy calls.
        self._rot = np.array([[cy, 0.0, sy], [0.0, -1.0, 0.0], [-sy, 0.0, cy]])   # row-vector form
        self._off = np.array([-x * cy + z * sy, cam_h, -x * sy - z * cy])
        self._roll = np.array([[cr, sr], [-sr, cr]])
        self._centre = np.array([width * 0.5, horizon])

    def to_cam(self, P: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> camera space (right, down, forward)."""
        return P @ self._rot + self._off

    def persp(self, C: np.ndarray) -> np.ndarray:
        """Camera-space points (z > 0) -> pixel coordinates."""
        return (C[..., :2] * (self.f / C[..., 2:3])) @ self._roll + self._centre

    def screen(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Offsets from the principal point on the horizon, rolled, -> pixel coordinates."""
        return np.stack((u, v), axis=-1) @ self._roll + self._centre


class _Sprite:
    """A flat object facing the camera at one depth: local metres (u right, y up) -> pixels."""

    def __init__(self, cv: Canvas, cam: Camera, anchor: np.ndarray, zc: float) -> None:
        self.cv = cv
        self.s = s = cam.f / zc
        self.ox, self.oy = float(anchor[0]), float(anchor[1])
        self.m = np.array([[s * cam.cr, s * cam.sr], [s * cam.sr, -s * cam.cr]])
        self.angle = math.degrees(cam.roll)

    def pts(self, loc: np.ndarray) -> np.ndarray:
        return loc @ self.m.T + (self.ox, self.oy)

    def poly(self, loc: Sequence | np.ndarray, color: Color) -> None:
        self.cv.fill([self.pts(np.asarray(loc, np.float64))], color)

    def polys(self, items: list[tuple[Sequence, Color]]) -> None:
        """Several polygons in painter's order, transformed in one batch."""
        pts = np.array([q for loc, _ in items for q in loc], np.float64)
        fixed = self.cv.to_fixed(self.pts(pts))
        if fixed is None:  # partly far off screen: the clipping path
            for loc, color in items:
                self.poly(loc, color)
            return
        off = 0
        for loc, color in items:
            self.cv.fill_fixed(fixed[None, off:off + len(loc)], color)
            off += len(loc)

    def rect(self, u0: float, u1: float, y0: float, y1: float, color: Color) -> None:
        self.poly(((u0, y0), (u1, y0), (u1, y1), (u0, y1)), color)

    def ellipse(self, u: float, y: float, ru: float, ry: float, color: Color,
                thick_m: float | None = None) -> None:
        c = self.pts(np.array([u, y]))
        t = -1 if thick_m is None else max(1, int(round(thick_m * self.s)))
        self.cv.ellipse(c[0], c[1], ru * self.s, ry * self.s, self.angle, color, t)

    def line(self, p: Sequence[float], q: Sequence[float], width_m: float, color: Color) -> None:
        a, b = self.pts(np.array([p, q], np.float64))
        self.cv.line(a, b, color, max(1, int(round(width_m * self.s))))


class _Ctx:
    """What a drawing call needs: the canvas and the camera."""

    def __init__(self, cv: Canvas, cam: Camera) -> None:
        self.cv, self.cam = cv, cam

    def polys3d(self, P: np.ndarray) -> list[np.ndarray] | np.ndarray:
        """World polygons (n, k, 3) -> pixel polygons, clipped to the near plane."""
        C = self.cam.to_cam(P)
        front = C[..., 2] >= NEAR
        whole = front.all(axis=1)
        if whole.all():
            return self.cam.persp(C)
        out: list[np.ndarray] = []
        if whole.any():
            out.extend(self.cam.persp(C[whole]))
        for c in C[~whole & front.any(axis=1)]:
            c = _clip_poly(c, 2, NEAR)
            if len(c) >= 3:
                out.append(self.cam.persp(c))
        return out

    def quads(self, P: np.ndarray, color: Color) -> None:
        """Fill world polygons (n, k, 3) or (k, 3)."""
        self.cv.fill(self.polys3d(P if P.ndim == 3 else P[None]), color)

    def sprite(self, x: float, y: float, z: float, size_m: float = 2.0) -> _Sprite | None:
        """A sprite anchored at world (x, y, z), or None if behind, too small or off screen."""
        C = self.cam.to_cam(np.array([x, y, z], np.float64))
        zc = float(C[2])
        if zc < 1.0:
            return None
        s = self.cam.f / zc
        if size_m * s < 1.5:
            return None
        a = self.cam.persp(C)
        r = size_m * s
        if a[0] < -r or a[0] > self.cam.width + r or a[1] < -r or a[1] > self.cam.height + 2 * r:
            return None
        return _Sprite(self.cv, self.cam, a, zc)


def _face_sub(face: np.ndarray, h0, h1, v0, v1) -> np.ndarray:
    """Sub-rectangles of a world rectangle face (4, 3): corners 0->1 is h, 0->3 is v, in [0, 1].
    Returns (n, 4, 3): windows, lights, doors placed on a face."""
    if all(isinstance(a, (int, float)) for a in (h0, h1, v0, v1)):  # the common case: one rectangle
        w = np.array([[(h0, v0), (h1, v0), (h1, v1), (h0, v1)]], np.float64)
    else:
        h0, h1, v0, v1 = np.broadcast_arrays(*(np.atleast_1d(np.asarray(a, np.float64)) for a in (h0, h1, v0, v1)))
        w = np.stack((h0, v0, h1, v0, h1, v1, h0, v1), axis=1).reshape(-1, 4, 2)
    return w @ (face[[1, 3]] - face[0]) + face[0]


# Box corner i is (x[i & 1], y[(i >> 1) & 1], z[i >> 2]); faces as corner indices, ordered so
# that corner 0 -> 1 runs along the face's "h" axis and 0 -> 3 along its "v" axis.
_BOX_FACES = {"near": (0, 1, 3, 2), "side0": (0, 4, 6, 2), "side1": (1, 5, 7, 3), "top": (2, 3, 7, 6)}


def _box_faces(x0: float, x1: float, y0: float, y1: float, z0: float, z1: float,
               view: tuple[float, float]) -> dict[str, np.ndarray]:
    """The faces of an axis-aligned box a camera at lateral x / height h = `view` can see.
    (The near face, z = z0, faces any camera behind it; once passed it is clipped away.)"""
    cx, ch = view
    names = ["near"]
    if cx < x0 or cx > x1:
        names.append("side0" if cx < x0 else "side1")
    if ch > y1:
        names.append("top")
    corners = np.array([(x0, y0, z0), (x1, y0, z0), (x0, y1, z0), (x1, y1, z0),
                        (x0, y0, z1), (x1, y0, z1), (x0, y1, z1), (x1, y1, z1)])
    faces = corners[[_BOX_FACES[n] for n in names]]
    return {n[:4]: f for n, f in zip(names, faces)}


# ----------------------------------------------------------------------------------------------
# Scene items. Positions are in a stream's frame: world z = s + dz, with dz = speed * t.

Geo = list[tuple[np.ndarray, Color, float]]  # (world polygons (n, k, 3), colour, max distance)


class _Item:
    layer = 2          # 0 ground, 1 roadside backdrop (sorted by lateral distance), 2 street
    s_lo = s_hi = 0.0  # extent along z in the stream frame, for culling
    x = 0.0            # lateral position, for sorting the roadside layer

    def draw(self, ctx: _Ctx, dz: float, t: float) -> None:
        raise NotImplementedError


class _Mesh(_Item):
    """Rigid world geometry: flat polygons per labelled part (buildings, vehicles...).

    All vertices are projected in one batch per frame (per-polygon numpy calls would dominate
    the run time); only meshes cut by the near plane take the slower clipping path. `build`
    defers making the polygons until the mesh is first drawn: most generated vehicles are
    hidden or off screen."""

    def __init__(self, layer: int, x: float, s_lo: float, s_hi: float,
                 parts: list[tuple[str, int, Geo]] | None = None,
                 build: Callable[[bool], list[tuple[str, int, Geo]]] | None = None,
                 lod_size: float = 0.0) -> None:
        self.layer, self.x, self.s_lo, self.s_hi = layer, x, s_lo, s_hi
        self._parts, self._build, self._lod_size = parts, build, lod_size
        self._flat: dict[bool, tuple[np.ndarray, list]] = {}

    def _flatten(self, detail: bool) -> tuple[np.ndarray, list]:
        parts = self._parts if self._parts is not None else self._build(detail)  # type: ignore[misc]
        verts, flat, off = [], [], 0
        for kind, cls, geo in parts:
            entries = []
            for P, color, max_dist in geo:
                n, k = P.shape[:2]
                verts.append(P.reshape(-1, 3))
                entries.append((off, n, k, color, max_dist, P))
                off += n * k
            flat.append((kind, cls, entries))
        return np.concatenate(verts), flat

    def draw(self, ctx: _Ctx, dz: float, t: float) -> None:
        cam, cv = ctx.cam, ctx.cv
        dist = self.s_lo + dz - cam.z
        # Details (wheels, lights, side windows) only once the object is ~24 px tall.
        detail = self._parts is not None or cam.f * self._lod_size >= 24.0 * max(dist, 1.0)
        if detail not in self._flat:
            self._flat[detail] = self._flatten(detail)
        verts, flat = self._flat[detail]
        C = cam.to_cam(verts + (0.0, 0.0, dz) if dz else verts)
        uv = cam.persp(C) if (C[:, 2] >= NEAR).all() else None
        fixed = cv.to_fixed(uv) if uv is not None else None
        for kind, cls, entries in flat:
            cv.begin(kind, cls)
            for off, n, k, color, max_dist, P in entries:
                if dist > max_dist:
                    continue
                if fixed is not None:
                    cv.fill_fixed(fixed[off:off + n * k].reshape(n, k, 2), color)
                elif uv is not None:
                    cv.fill(uv[off:off + n * k].reshape(n, k, 2), color)
                else:
                    ctx.quads(P + (0.0, 0.0, dz) if dz else P, color)


class _Tree(_Item):
    def __init__(self, rng: np.random.Generator, layer: int, x: float, y0: float, s: float,
                 scale: float = 1.0) -> None:
        self.layer, self.x, self.y0, self.s_lo = layer, x, y0, s
        self.s_hi = s
        u = rng.random(4)
        self.trunk_h, self.trunk_w = (1.6 + 1.8 * u[0]) * scale, (0.18 + 0.2 * u[1]) * scale
        self.conifer = u[2] < 0.2
        self.r = r = (1.4 + 1.8 * u[3]) * scale
        self.height = self.trunk_h + 2 * r
        self.trunk_col = _jit(rng, (92, 72, 52), 14)
        # Crown: overlapping ellipses drawn bottom-up; lower ones darker (cheap self-shadowing).
        n = int(rng.integers(3, 7))
        b = rng.random((n, 4))
        b = b[np.argsort(b[:, 1])]
        dy = (b[:, 1] * 1.1 - 0.5) * r
        rgb = np.asarray(_pick(rng, VEG_RGB), np.float64) * (0.8 + 0.25 * (dy / r + 0.5))[:, None]
        bgr = np.clip(rgb + rng.normal(0.0, 8.0, (n, 3)), 0, 255).astype(int)[:, ::-1].tolist()
        self.blobs = [(du, y, ru, ry, tuple(c)) for du, y, ru, ry, c in
                      zip(((b[:, 0] - 0.5) * 1.1 * r).tolist(), (self.trunk_h + r + dy).tolist(),
                          (r * (0.55 + 0.3 * b[:, 2])).tolist(), (r * (0.5 + 0.3 * b[:, 3])).tolist(), bgr)]

    def draw(self, ctx: _Ctx, dz: float, t: float) -> None:
        sp = ctx.sprite(self.x, self.y0, self.s_lo + dz, self.height)
        if sp is None:
            return
        ctx.cv.begin("tree", VEGETATION)
        sp.rect(-self.trunk_w / 2, self.trunk_w / 2, 0, self.trunk_h + self.r * 0.5, self.trunk_col)
        if self.conifer:
            h0, r = self.trunk_h * 0.6, self.r
            for i, (_, _, _, _, col) in enumerate(self.blobs[:3]):
                y = h0 + i * r * 0.8
                sp.poly(((-r * (1 - 0.25 * i), y), (r * (1 - 0.25 * i), y), (0, y + 1.6 * r)), col)
        else:
            for du, y, ru, ry, col in self.blobs:
                sp.ellipse(du, y, ru, ry, col)


class _Bush(_Item):
    def __init__(self, rng: np.random.Generator, layer: int, x: float, y0: float, s: float) -> None:
        self.layer, self.x, self.y0, self.s_lo, self.s_hi = layer, x, y0, s, s
        base = np.array(_pick(rng, VEG_RGB), np.float64)
        w = rng.uniform(0.6, 2.0)
        self.blobs = [(rng.uniform(-0.5, 0.5) * w, rng.uniform(0.3, 0.6) * w, w * rng.uniform(0.3, 0.55),
                       w * rng.uniform(0.25, 0.45), _jit(rng, base, 10)) for _ in range(int(rng.integers(2, 5)))]
        self.size = w

    def draw(self, ctx: _Ctx, dz: float, t: float) -> None:
        sp = ctx.sprite(self.x, self.y0, self.s_lo + dz, self.size)
        if sp is None:
            return
        ctx.cv.begin("bush", VEGETATION)
        for du, y, ru, ry, col in self.blobs:
            sp.ellipse(du, y, ru, ry, col)


class _Lamp(_Item):
    """Street lamp: pole with an arm over the road."""

    def __init__(self, rng: np.random.Generator, x: float, y0: float, s: float, toward: float) -> None:
        self.x, self.y0, self.s_lo, self.s_hi = x, y0, s, s
        self.h = rng.uniform(6.0, 9.0)
        self.w = rng.uniform(0.12, 0.22)
        self.arm = toward * rng.uniform(0.8, 2.4)
        self.col = _jit(rng, _pick(rng, POLE_RGB), 6)
        self.head = _jit(rng, (70, 70, 72), 8)

    def draw(self, ctx: _Ctx, dz: float, t: float) -> None:
        sp = ctx.sprite(self.x, self.y0, self.s_lo + dz, self.h)
        if sp is None:
            return
        ctx.cv.begin("pole", POLE)
        w = self.w
        sp.poly(((-w / 2, 0), (w / 2, 0), (w * 0.3, self.h), (-w * 0.3, self.h)), self.col)
        sp.line((0, self.h - 0.4), (self.arm, self.h), 0.08, self.col)
        sp.ellipse(self.arm, self.h - 0.05, 0.35, 0.1, self.head)


def _draw_post(item: _SignPole | _LightPole, ctx: _Ctx, dz: float) -> _Sprite | None:
    """The straight post under a sign or a traffic light (item has x, y0, s_lo, h, w, col);
    returns its sprite for what hangs on it, or None when it is off screen."""
    sp = ctx.sprite(item.x, item.y0, item.s_lo + dz, item.h)
    if sp is not None:
        ctx.cv.begin("pole", POLE)
        sp.rect(-item.w / 2, item.w / 2, 0, item.h, item.col)
    return sp


class _SignPole(_Item):
    """A pole carrying one or two traffic signs (front or back side visible)."""

    def __init__(self, rng: np.random.Generator, x: float, y0: float, s: float) -> None:
        self.x, self.y0, self.s_lo, self.s_hi = x, y0, s, s
        self.h = rng.uniform(2.4, 3.4)
        self.w = rng.uniform(0.06, 0.1)
        self.col = _jit(rng, _pick(rng, POLE_RGB), 6)
        self.signs = []
        y = self.h
        for _ in range(1 if rng.random() < 0.7 else 2):
            size = rng.uniform(0.55, 0.85)
            shape = _pick(rng, ("circle", "triangle", "yield", "square", "board", "octagon", "diamond"))
            front = rng.random() < 0.75
            self.signs.append((shape, y - size / 2, size, front, self._colors(rng, shape)))
            y -= size + 0.08

    @staticmethod
    def _colors(rng: np.random.Generator, shape: str) -> tuple[Color, Color, Color]:
        rim, inner = {"circle": ((200, 30, 30), (240, 240, 240)), "triangle": ((210, 30, 30), (245, 245, 240)),
                      "yield": ((210, 30, 30), (245, 245, 240)), "square": ((30, 80, 180), (30, 80, 180)),
                      "board": ((240, 240, 235), (30, 110, 60)), "octagon": ((240, 240, 240), (200, 30, 30)),
                      "diamond": ((245, 245, 240), (240, 200, 30))}[shape]
        if shape == "circle" and rng.random() < 0.4:
            inner = (30, 80, 180)
        return _jit(rng, rim, 8), _jit(rng, inner, 8), _jit(rng, (150, 150, 152), 10)

    def draw(self, ctx: _Ctx, dz: float, t: float) -> None:
        sp = _draw_post(self, ctx, dz)
        if sp is None:
            return
        ctx.cv.begin("traffic sign", TRAFFIC_SIGN)
        for shape, yc, size, front, (rim, inner, back) in self.signs:
            r = size / 2
            outline = _sign_outline(shape, r)
            if not front:
                sp.poly(outline + (0, yc), back)
                continue
            sp.poly(outline + (0, yc), rim)
            sp.poly(outline * (0.72 if shape != "board" else 0.9) + (0, yc), inner)


def _sign_outline(shape: str, r: float) -> np.ndarray:
    if shape == "circle":
        k = 16
    elif shape == "octagon":
        k = 8
    elif shape in ("triangle", "yield"):
        k = 3
    elif shape == "diamond":
        return np.array([(0, -r), (r, 0), (0, r), (-r, 0)])
    elif shape == "board":
        return np.array([(-1.4 * r, -0.5 * r), (1.4 * r, -0.5 * r), (1.4 * r, 0.5 * r), (-1.4 * r, 0.5 * r)])
    else:
        return np.array([(-r, -r), (r, -r), (r, r), (-r, r)]) * 0.85
    start = {3: math.pi / 2, 8: math.pi / 8, 16: 0.0}[k]
    if shape == "yield":
        start = -math.pi / 2
    a = start + np.arange(k) * 2 * math.pi / k
    return np.stack((np.cos(a) * r, np.sin(a) * r), axis=1)


_LAMPS = (_bgr((255, 40, 30)), _bgr((255, 180, 20)), _bgr((40, 240, 130)))  # red, amber, green
_LAMP_OFF = _bgr((45, 45, 45))


class _LightPole(_Item):
    """Traffic light on a short post, or hanging from a mast arm over the road."""

    def __init__(self, rng: np.random.Generator, x: float, y0: float, s: float, toward: float) -> None:
        self.x, self.y0, self.s_lo, self.s_hi = x, y0, s, s
        self.mast = rng.random() < 0.5
        self.h = rng.uniform(5.5, 6.8) if self.mast else rng.uniform(2.6, 3.4)
        self.w = rng.uniform(0.1, 0.18)
        self.col = _jit(rng, _pick(rng, POLE_RGB), 6)
        self.arm = toward * rng.uniform(3.0, 6.5) if self.mast else 0.0
        housing = _jit(rng, _pick(rng, [(28, 28, 30), (60, 62, 60), (205, 172, 40)]), 6)
        n = 1 if not self.mast else int(rng.integers(1, 3))
        self.lights = []
        for i in range(n):
            u = self.arm * (0.55 + 0.4 * i) if self.mast else 0.0
            lit = int(rng.integers(3))
            self.lights.append((u, housing, lit, rng.random() < 0.8))

    def draw(self, ctx: _Ctx, dz: float, t: float) -> None:
        sp = _draw_post(self, ctx, dz)
        if sp is None:
            return
        if self.mast:
            sp.line((0, self.h - 0.3), (self.arm, self.h - 0.3), 0.12, self.col)
        ctx.cv.begin("traffic light", TRAFFIC_LIGHT)
        for u, housing, lit, front in self.lights:
            top = self.h - 0.3 if self.mast else self.h + 0.95
            sp.rect(u - 0.17, u + 0.17, top - 0.95, top, housing)
            if front:
                for k in range(3):
                    sp.ellipse(u, top - 0.17 - k * 0.3, 0.1, 0.1, _LAMPS[k] if k == lit else _LAMP_OFF)


def _rect(u0: float, u1: float, y0: float, y1: float) -> tuple:
    return ((u0, y0), (u1, y0), (u1, y1), (u0, y1))


def _person_shapes(sp: _Sprite, p: "_Person", phase: float, seat: float | None = None) -> None:
    """A stylised person (legs, torso, arms, head); `seat` = hip height when riding."""
    h, bw = p.h, p.bw
    sw = p.swing * math.sin(phase)
    hip, sh = 0.53 * h, 0.81 * h
    head_r = 0.065 * h
    lift = 0.0 if seat is None else seat - hip
    polys: list[tuple[Sequence, Color]] = []
    if sp.s * h < 22:  # a few pixels tall: legs, body and head are all that can be seen
        base, top = (0.0, hip) if seat is None else (0.35, seat)
        polys.append((((-0.15 * bw, top), (0.15 * bw, top), (0.15 * bw + abs(sw), base),
                       (-0.15 * bw - abs(sw), base)), p.pants))
        polys.append((_rect(-0.21 * bw, 0.21 * bw, hip + lift - 0.03, sh + lift), p.shirt))
        sp.polys(polys)
        sp.ellipse(0, sh + lift + 0.05 + head_r, head_r * 0.85, head_r, p.hair if p.facing_away else p.skin)
        return
    if seat is not None:  # a rider: hips on the saddle, feet on pedals / pegs
        for sg in (-1, 1):
            polys.append((((sg * 0.16 - 0.07, seat), (sg * 0.16 + 0.07, seat), (sg * 0.2 + 0.05, 0.35),
                           (sg * 0.2 - 0.05, 0.35)), p.pants))
    else:
        for sg in (-1, 1):
            hx, fx = sg * 0.085 * bw, sg * 0.085 * bw + sg * sw
            polys.append((((hx - 0.07, hip), (hx + 0.07, hip), (fx + 0.055, 0.06), (fx - 0.055, 0.06)), p.pants))
            polys.append((_rect(fx - 0.06, fx + 0.06, 0.0, 0.07), p.shoes))
    hip, sh = hip + lift, sh + lift
    low = hip - (0.18 * h if p.coat else 0.03)
    polys.append((((-0.19 * bw, low), (0.19 * bw, low), (0.22 * bw, sh), (-0.22 * bw, sh)), p.shirt))
    if p.bag:
        polys.append((_rect(0.2 * bw, 0.3 * bw, hip - 0.1, hip + 0.2), p.bag))
    for sg in (-1, 1):
        hand_y = hip + 0.15 if seat is not None else 0.47 * h
        hand_u = sg * 0.3 * bw if seat is not None else sg * 0.24 * bw - sg * 0.5 * sw
        polys.append((((sg * 0.19 * bw - 0.045, sh), (sg * 0.19 * bw + 0.045, sh), (hand_u + 0.04, hand_y),
                       (hand_u - 0.04, hand_y)), p.shirt if p.sleeves else p.skin))
    polys.append((_rect(-0.04, 0.04, sh - 0.02, sh + 0.06), p.skin))
    sp.polys(polys)
    sp.ellipse(0, sh + 0.05 + head_r, head_r * 0.82, head_r, p.skin)
    if p.facing_away:
        sp.ellipse(0, sh + 0.06 + head_r, head_r * 0.86, head_r * 0.96, p.hair)
    else:
        sp.ellipse(0, sh + 0.12 + head_r, head_r * 0.84, head_r * 0.5, p.hair)


class _Person(_Item):
    def __init__(self, rng: np.random.Generator, x: float, y0: float, s: float, side_view: bool,
                 walking: bool, facing_away: bool | None = None) -> None:
        self.x, self.y0, self.s_lo, self.s_hi = x, y0, s, s
        self.h = rng.uniform(1.5, 1.95)
        self.bw = rng.uniform(0.9, 1.2)
        self.swing = (rng.uniform(0.18, 0.28) if side_view else rng.uniform(0.02, 0.06)) if walking else 0.0
        self.phase0 = rng.uniform(0, 2 * math.pi)
        self.freq = rng.uniform(5.0, 7.0)  # rad/s: ~1 step per second
        away = rng.random() < 0.5
        self.facing_away = away if facing_away is None else facing_away
        self.coat = rng.random() < 0.3
        self.sleeves = rng.random() < 0.7
        self.skin = _jit(rng, _pick(rng, SKIN_RGB), 8)
        self.hair = _jit(rng, _pick(rng, HAIR_RGB), 8)
        self.shirt = _bgr(rng.integers(0, 256, 3) * rng.uniform(0.3, 1.0))
        self.pants = _bgr(rng.integers(0, 200, 3) * rng.uniform(0.2, 0.8))
        self.shoes = _jit(rng, (40, 36, 34), 15)
        self.bag = _jit(rng, (60, 50, 40), 30) if rng.random() < 0.25 else None

    def draw(self, ctx: _Ctx, dz: float, t: float) -> None:
        sp = ctx.sprite(self.x, self.y0, self.s_lo + dz, self.h)
        if sp is None:
            return
        ctx.cv.begin("person", PERSON)
        _person_shapes(sp, self, self.phase0 + self.freq * t)


class _TwoWheeler(_Item):
    """Bicycle or motorcycle seen at an angle (`squash` = |sin| of it), optionally ridden."""

    def __init__(self, rng: np.random.Generator, x: float, y0: float, s: float, motor: bool,
                 rider: bool, squash: float) -> None:
        self.x, self.y0, self.s_lo, self.s_hi = x, y0, s, s
        self.motor, self.sq = motor, squash
        self.dir = 1.0 if rng.random() < 0.5 else -1.0
        self.frame = _bgr(rng.integers(0, 256, 3) * rng.uniform(0.3, 1.0))
        self.tyre = _jit(rng, (30, 30, 32), 6)
        self.metal = _jit(rng, (150, 150, 155), 10)
        # Ridden ones move along the road, away from the camera: we see the rider's back.
        self.rider = _Person(rng, x, y0, s, False, False, facing_away=True) if rider else None

    def draw(self, ctx: _Ctx, dz: float, t: float) -> None:
        sp = ctx.sprite(self.x, self.y0, self.s_lo + dz, 1.8)
        if sp is None:
            return
        cls = MOTORCYCLE if self.motor else BICYCLE
        ctx.cv.begin("motorcycle" if self.motor else "bicycle", cls)
        q = self.sq * self.dir
        if self.motor:
            for wu in (-0.7, 0.7):
                sp.ellipse(wu * q, 0.32, 0.32 * self.sq + 0.07, 0.32, self.tyre)
                sp.ellipse(wu * q, 0.32, 0.12 * self.sq + 0.03, 0.12, self.metal)
            body = np.array([(-0.65, 0.55), (0.45, 0.5), (0.6, 0.85), (0.2, 0.98), (-0.3, 0.88), (-0.75, 0.78)])
            # Side-on: tank and seat outline; nearly head-on: just a narrow block.
            sp.poly(body * (q, 1) if abs(q) > 0.25 else _rect(-0.22, 0.22, 0.45, 0.95), self.frame)
            sp.rect(-0.16 * self.sq - 0.1, 0.16 * self.sq + 0.1, 0.3, 0.55, self.tyre)
            sp.line((0.55 * q - 0.3 * (1 - self.sq), 1.1), (0.55 * q + 0.3 * (1 - self.sq), 1.1), 0.04, self.metal)
            seat = 0.92
        else:
            r = 0.34
            for wu in (-0.53, 0.53):
                sp.ellipse(wu * q, r, r * self.sq + 0.02, r, self.tyre, thick_m=0.05)
            bb, st, ht, rh, fh = (0.0, 0.3), (-0.12, 0.82), (0.4, 0.88), (-0.53, r), (0.53, r)
            pts = [(a * q, b) for a, b in (bb, st, ht, rh, fh)]
            for a, b in ((3, 1), (1, 0), (0, 3), (1, 2), (0, 2), (2, 4)):
                sp.line(pts[a], pts[b], 0.035, self.frame)
            sp.line((pts[1][0] - 0.1, 0.95), (pts[1][0] + 0.1, 0.95), 0.05, self.tyre)
            bar = 0.25 * (1 - self.sq) + 0.05
            sp.line((pts[2][0] - bar, 1.02), (pts[2][0] + bar, 1.02), 0.03, self.tyre)
            seat = 0.95
        if self.rider is not None:
            ctx.cv.begin("rider", RIDER)
            _person_shapes(sp, self.rider, 0.0, seat=seat)


# ----------------------------------------------------------------------------------------------
# Vehicles: boxes with windows, lights and wheels, precomputed as world polygons

_UNIT_CIRCLE = {k: np.stack((np.zeros(k), np.cos(np.arange(k) * 2 * math.pi / k),
                             np.sin(np.arange(k) * 2 * math.pi / k)), axis=1) for k in (8, 12)}


def _wheel_disc(x: float, r: float, zc: float, k: int = 12) -> np.ndarray:
    """A wheel on a side face: a k-gon in the plane x = const, centred at height r."""
    return (_UNIT_CIRCLE[k] * r + (x, r, zc))[None]


def _vehicle(rng: np.random.Generator, kind: str, xc: float, s: float, facing: int,
             view: tuple[float, float], road: Color) -> tuple[_Mesh, float]:
    """A vehicle centred at lateral `xc`, near end at z = s; `facing` +1 drives away from the
    camera (rear visible), -1 comes towards it (front visible). Returns the mesh and its length.
    The polygons are built on first use, from their own seed, coarse (boxes only) when the
    vehicle is small on screen and detailed otherwise; both agree on shape and colours."""
    length = rng.uniform(*{"car": (3.8, 4.9), "van": (4.6, 5.4), "truck": (7.2, 11.2),
                           "bus": (10.5, 12.5), "tram": (24.0, 30.0)}[kind])
    seed = int(rng.integers(1 << 62))

    def build(detail: bool) -> list[tuple[str, int, Geo]]:
        geo_fn = {"car": _car_geo, "van": _car_geo, "truck": _truck_geo, "bus": _bus_geo, "tram": _bus_geo}[kind]
        cls, geo, width = geo_fn(np.random.default_rng(seed), kind, xc, s, length, facing, view, detail)
        w = width / 2 + 0.12
        shadow = np.array([[(xc - w, 0.0, s - 0.15), (xc + w, 0.0, s - 0.15), (xc + w, 0.0, s + length + 0.15),
                            (xc - w, 0.0, s + length + 0.15)]])
        return [("vehicle shadow", ROAD, [(shadow, _shade(road, 0.45), np.inf)]), (kind, cls, geo)]

    return _Mesh(2, xc, s, s + length, build=build, lod_size=2.0), length


_FACE_SHADE = {"near": 0.92, "side": 0.75, "top": 1.1}


def _add_box(geo: Geo, box: tuple[float, ...], view: tuple[float, float], color: Color) -> dict[str, np.ndarray]:
    """Append the visible faces of a box, shaded by orientation; returns them for details."""
    faces = _box_faces(*box, view)
    for name, face in faces.items():
        geo.append((face[None], _shade(color, _FACE_SHADE[name]), np.inf))
    return faces


def _add_wheels(geo: Geo, x0: float, x1: float, zs: Sequence[float], r: float,
                view: tuple[float, float], tyre: Color) -> None:
    """The nearest pair of tyres as seen under the bumper (drawn before the body, which hides
    their upper part); tyres on the side are the discs of `_add_side_discs`."""
    z = min(zs) - r
    geo.append((np.array([[(a, 0.0, z), (b, 0.0, z), (b, 2 * r, z), (a, 2 * r, z)]
                          for a, b in ((x0 + 0.02, x0 + 0.26), (x1 - 0.26, x1 - 0.02))]), tyre, np.inf))


def _add_side_discs(geo: Geo, x0: float, x1: float, zs: Sequence[float], r: float,
                    view: tuple[float, float], tyre: Color, hub: Color) -> None:
    """Wheels on the side face the camera sees (none when the camera is right behind)."""
    cx = view[0]
    if x0 < cx < x1:
        return
    x = x0 if cx < x0 else x1
    geo.append((np.concatenate([_wheel_disc(x, r, zc) for zc in zs]), tyre, np.inf))
    geo.append((np.concatenate([_wheel_disc(x, r * 0.5, zc, 8) for zc in zs]), hub, np.inf))


def _light_color(rng: np.random.Generator, facing: int) -> Color:
    return _jit(rng, (235, 40, 30), 10) if facing > 0 else _jit(rng, (245, 240, 215), 8)


def _car_geo(rng: np.random.Generator, kind: str, xc: float, s: float, L: float, facing: int,
            view: tuple[float, float], detail: bool) -> tuple[int, Geo, float]:
    """Car or van: body box, cabin box, windows, lights, plate, wheels. Returns (class, polygons,
    width); `detail` False leaves out what is invisible at a distance (same random draws)."""
    van = kind == "van"
    W = rng.uniform(1.8, 2.0) if van else rng.uniform(1.65, 1.9)
    suv = not van and rng.random() < 0.25
    body_top = rng.uniform(1.0, 1.15) if (suv or van) else rng.uniform(0.82, 0.98)
    cab_top = (rng.uniform(1.9, 2.2) if van else body_top + rng.uniform(0.42, 0.56)
               + (0.15 if suv else 0.0))
    short, long_ = (rng.uniform(0.4, 0.9), rng.uniform(1.0, 1.5)) if not van else (0.05, 0.9)
    color = _jit(rng, _pick(rng, CAR_RGB), 8)
    glass = _jit(rng, _pick(rng, [(30, 36, 44), (52, 60, 70), (20, 22, 26)]), 6)
    tyre, hub = _jit(rng, (26, 26, 28), 4), _jit(rng, (140, 140, 146), 12)
    light, plate = _light_color(rng, facing), _jit(rng, (225, 225, 220), 8)
    r = rng.uniform(0.3, 0.36)
    x0, x1, z0, z1 = xc - W / 2, xc + W / 2, s, s + L
    axles = (z0 + 0.75, z1 - 0.85)
    geo: Geo = []
    if detail:
        _add_wheels(geo, x0, x1, axles, r, view, tyre)
    body = _add_box(geo, (x0, x1, 0.28 if detail else 0.1, body_top, z0, z1), view, color)
    cz0, cz1 = (z0 + short, z1 - long_) if facing > 0 else (z0 + long_, z1 - short)
    cab = _add_box(geo, (x0 + 0.1, x1 - 0.1, body_top, cab_top, cz0, cz1), view, color)
    geo.append((_face_sub(cab["near"], 0.08, 0.92, 0.1, 0.88), glass, np.inf))
    if detail:
        if "side" in cab:
            geo.append((_face_sub(cab["side"], [0.05, 0.53], [0.47, 0.95], 0.15 if not van else 0.45, 0.88),
                        glass, np.inf))
        near = body["near"]
        geo.append((_face_sub(near, [0.04, 0.8], [0.2, 0.96], 0.55, 0.85), light, np.inf))
        geo.append((_face_sub(near, 0.38, 0.62, 0.12, 0.38), plate, np.inf))
        _add_side_discs(geo, x0, x1, axles, r, view, tyre, hub)
    return (CAR, geo, W)


def _truck_geo(rng: np.random.Generator, kind: str, xc: float, s: float, L: float, facing: int,
              view: tuple[float, float], detail: bool) -> tuple[int, Geo, float]:
    """Box truck: cab and cargo box, the nearer one drawn last."""
    Lc = rng.uniform(2.0, 2.5)
    Lb = L - Lc - 0.2
    Wc, Wb = 2.3, rng.uniform(2.35, 2.55)
    top = rng.uniform(3.3, 3.9)
    cab_col = _jit(rng, _pick(rng, CAR_RGB + [(240, 240, 240)] * 3), 8)
    box_col = _jit(rng, _pick(rng, [(235, 235, 232), (180, 182, 186), (200, 60, 40), (40, 70, 140), (240, 200, 60)]), 8)
    tyre, hub = _jit(rng, (26, 26, 28), 4), _jit(rng, (140, 140, 146), 12)
    glass, light = _jit(rng, (40, 46, 52), 6), _light_color(rng, facing)
    if facing > 0:
        cargo, cab = (s, s + Lb), (s + Lb + 0.2, s + Lb + 0.2 + Lc)
    else:
        cab, cargo = (s, s + Lc), (s + Lc + 0.2, s + Lc + 0.2 + Lb)
    geo: Geo = []
    axles = (s + 1.0, s + L - 1.2, s + L - 2.4) if facing > 0 else (s + 1.0, s + L - 1.2)
    if detail:
        _add_wheels(geo, xc - Wb / 2, xc + Wb / 2, axles, 0.48, view, tyre)
    for name, (a, b) in sorted((("cab", cab), ("cargo", cargo)), key=lambda p: -p[1][0]):  # far piece first
        if name == "cab":
            f = _add_box(geo, (xc - Wc / 2, xc + Wc / 2, 0.5 if detail else 0.2, 2.9, a, b), view, cab_col)
            if facing < 0:
                geo.append((_face_sub(f["near"], 0.06, 0.94, 0.55, 0.9), glass, np.inf))
                if detail:
                    geo.append((_face_sub(f["near"], [0.04, 0.8], [0.2, 0.96], 0.12, 0.22), light, np.inf))
            if "side" in f and detail:
                geo.append((_face_sub(f["side"], 0.15, 0.8, 0.55, 0.88), glass, np.inf))
        else:
            f = _add_box(geo, (xc - Wb / 2, xc + Wb / 2, 0.9 if detail else 0.3, top, a, b), view, box_col)
            if facing > 0 and detail:
                geo.append((_face_sub(f["near"], 0.495, 0.505, 0.03, 0.97), _shade(box_col, 0.6), np.inf))
                geo.append((_face_sub(f["near"], [0.04, 0.8], [0.2, 0.96], 0.03, 0.08), light, np.inf))
    if detail:
        _add_side_discs(geo, xc - Wb / 2, xc + Wb / 2, axles, 0.48, view, tyre, hub)
    return (TRUCK, geo, Wb)


def _bus_geo(rng: np.random.Generator, kind: str, xc: float, s: float, L: float, facing: int,
            view: tuple[float, float], detail: bool) -> tuple[int, Geo, float]:
    """Bus or tram: one long box with a band of side windows."""
    tram = kind == "tram"
    W = 2.4 if tram else 2.55
    y0, y1 = (0.35, 3.4) if tram else (0.3, 3.1)
    col = _jit(rng, _pick(rng, BUS_RGB), 8)
    glass = _jit(rng, _pick(rng, [(30, 36, 44), (52, 60, 70)]), 6)
    tyre, hub = _jit(rng, (26, 26, 28), 4), _jit(rng, (120, 120, 126), 12)
    sign = _jit(rng, (40, 30, 20), 8)
    front = facing < 0 or tram
    light = _light_color(rng, -1 if front else 1)
    geo: Geo = []
    axles = (s + 2.5, s + L - 2.5) if not tram else (s + 3.0, s + L / 2, s + L - 3.0)
    if detail:
        _add_wheels(geo, xc - W / 2, xc + W / 2, axles, 0.5, view, tyre)
    f = _add_box(geo, (xc - W / 2, xc + W / 2, y0 if detail else 0.1, y1, s, s + L), view, col)
    if front:  # the front: big windscreen and a destination sign
        geo.append((_face_sub(f["near"], 0.06, 0.94, 0.38, 0.86), glass, np.inf))
    else:
        geo.append((_face_sub(f["near"], 0.1, 0.9, 0.6, 0.88), glass, np.inf))
    if "side" in f:
        n = int(L // 2.2)
        h0 = 0.04 + np.arange(n) * (0.92 / n)
        geo.append((_face_sub(f["side"], h0, h0 + 0.92 / n - 0.01, 0.5, 0.88), glass, np.inf))
    if detail:
        if front:
            geo.append((_face_sub(f["near"], 0.15, 0.85, 0.88, 0.96), sign, np.inf))
        geo.append((_face_sub(f["near"], [0.04, 0.8], [0.2, 0.96], 0.1, 0.2), light, np.inf))
        if not tram:
            _add_side_discs(geo, xc - W / 2, xc + W / 2, axles, 0.5, view, tyre, hub)
    return (TRAIN if tram else BUS, geo, W)


# ----------------------------------------------------------------------------------------------
# Roadside structures (layer 1): buildings, walls, fences, hedges

def _building(rng: np.random.Generator, side: int, xf: float, y0: float, z0: float, z1: float,
              height: float, view: tuple[float, float], f_px: float) -> _Mesh:
    """A block whose facade is the plane x = xf, facing the road; near end face at z0."""
    depth = rng.uniform(8, 20)
    xb = xf + side * depth
    col = _jit(rng, _pick(rng, BUILDING_RGB), 10)
    facade = np.array([(xf, y0, z0), (xf, y0, z1), (xf, height, z1), (xf, height, z0)])
    end = np.array([(xf, y0, z0), (xb, y0, z0), (xb, height, z0), (xf, height, z0)])
    geo: Geo = [(end[None], _shade(col, 0.8), np.inf), (facade[None], col, np.inf)]
    if rng.random() < 0.6:  # cornice band
        geo.append((_face_sub(facade, 0, 1, 1 - 0.5 / height, 1), _jit(rng, _shade(col, 0.75), 6), 250.0))
    floor_h, ground_h = rng.uniform(2.8, 3.5), rng.uniform(3.2, 4.5)
    # Windows: only where a floor is at least ~3 px tall, otherwise they are sub-pixel noise.
    win_dist = f_px * floor_h / 3.0
    length = z1 - z0
    col_w = rng.uniform(2.2, 4.0)
    n_cols = int((length - 1.0) // col_w)
    n_floors = int((height - ground_h - 0.8) // floor_h)
    if n_cols >= 1 and n_floors >= 1:
        ww, wh = rng.uniform(0.8, min(1.7, col_w - 0.5)), rng.uniform(1.2, min(2.0, floor_h - 0.7))
        start = (length - n_cols * col_w) / 2 + (col_w - ww) / 2
        hz, vy = np.meshgrid((start + np.arange(n_cols) * col_w) / length,
                             (ground_h + 0.8 - y0 + np.arange(n_floors) * floor_h) / (height - y0))
        hz, vy = hz.ravel(), vy.ravel()
        quads = _face_sub(facade, hz, hz + ww / length, vy, vy + wh / (height - y0))
        colors = [_jit(rng, _pick(rng, WINDOW_RGB), 6) for _ in range(2)]
        lit = _jit(rng, (230, 210, 150), 10)
        which = np.searchsorted((0.55, 0.95), rng.random(len(hz)))
        for k, c in enumerate(colors + [lit]):
            if (which == k).any():
                geo.append((quads[which == k], c, win_dist))
    # Ground floor: shop windows or a door.
    if rng.random() < 0.6 and length > 4:
        n = max(1, int(length // 5))
        h0 = (np.arange(n) + 0.12) / n
        geo.append((_face_sub(facade, h0, h0 + 0.76 / n, (0.3) / height, (ground_h - 0.5) / height),
                    _jit(rng, _pick(rng, WINDOW_RGB), 8), 120.0))
    else:
        h = rng.uniform(0.2, 0.8)
        geo.append((_face_sub(facade, h, h + 1.4 / length, 0, 2.3 / height), _jit(rng, (80, 60, 45), 20), 80.0))
    mesh = _Mesh(1, xf, z0, z1, [("building", BUILDING, geo)])
    mesh.casts = (xf, z0, z1, height)  # type: ignore[attr-defined]  # for sunlit shadows
    return mesh


def _wall(rng: np.random.Generator, side: int, x: float, y0: float, z0: float, z1: float,
          view: tuple[float, float]) -> _Mesh:
    h = rng.uniform(0.8, 2.6)
    col = _jit(rng, _pick(rng, WALL_RGB), 10)
    thick = rng.uniform(0.2, 0.4)
    x0, x1 = (x, x + thick) if side > 0 else (x - thick, x)
    geo: Geo = []
    f = _add_box(geo, (x0, x1, y0, y0 + h, z0, z1), view, col)
    if "side" in f and rng.random() < 0.5:  # coping stones along the top
        geo.append((_face_sub(f["side"], 0, 1, 0.9, 1.0), _shade(col, 0.9), 150.0))
    return _Mesh(1, x, z0, z1, [("wall", WALL, geo)])


def _hedge(rng: np.random.Generator, side: int, x: float, y0: float, z0: float, z1: float,
           view: tuple[float, float]) -> _Mesh:
    h = rng.uniform(0.8, 2.0)
    t = rng.uniform(0.6, 1.2)
    x0, x1 = (x, x + t) if side > 0 else (x - t, x)
    geo: Geo = []
    _add_box(geo, (x0, x1, y0, y0 + h, z0, z1), view, _jit(rng, _pick(rng, VEG_RGB), 8))
    return _Mesh(1, x, z0, z1, [("hedge", VEGETATION, geo)])


def _fence(rng: np.random.Generator, side: int, x: float, y0: float, z0: float, z1: float) -> _Mesh:
    """Posts + rails, plus pickets or a solid panel. Gaps show what is behind (labelled as such)."""
    h = rng.uniform(0.9, 2.0)
    col = _jit(rng, _pick(rng, FENCE_RGB), 10)
    style = _pick(rng, ("picket", "picket", "rails", "panel"))
    face = np.array([(x, y0, z0), (x, y0, z1), (x, y0 + h, z1), (x, y0 + h, z0)])
    L = z1 - z0
    geo: Geo = []
    if style == "panel":
        geo.append((face[None], col, np.inf))
        return _Mesh(1, x, z0, z1, [("fence", FENCE, geo)])
    pitch = rng.uniform(0.12, 0.22) if style == "picket" else rng.uniform(1.8, 2.6)
    width = rng.uniform(0.35, 0.6) * pitch if style == "picket" else 0.1
    h0 = np.arange(0.0, L - width, pitch) / L
    posts = _face_sub(face, h0, h0 + width / L, 0, 1)
    rails = _face_sub(face, 0, 1, [0.2, 0.75], [0.28, 0.83])
    # Rails and pickets overlap, so they go in separate calls (cv2 XORs overlaps in one call).
    geo.append((rails, _shade(col, 0.85), np.inf))
    geo.append((posts, col, np.inf))
    return _Mesh(1, x, z0, z1, [("fence", FENCE, geo)])


class _GroundQuads(_Mesh):
    """Flat patches on the ground (grass, pavement, crossings, repairs): layer 0."""

    def __init__(self, cls: int, quads: np.ndarray, color: Color, kind: str) -> None:
        super().__init__(0, 0.0, float(quads[..., 2].min()), float(quads[..., 2].max()),
                         [(kind, cls, [(quads, color, np.inf)])])


def _ground_rect(x0, x1, y: float, z0, z1) -> np.ndarray:
    """Horizontal rectangles [x0, x1] x [z0, z1] at height y, as (n, 4, 3); the bounds may be
    arrays (dashes, zebra stripes), broadcast together."""
    x0, x1, z0, z1 = np.broadcast_arrays(*(np.atleast_1d(np.asarray(a, np.float64)) for a in (x0, x1, z0, z1)))
    y = np.full_like(x0, y)
    return np.stack([np.stack(c, axis=1) for c in ((x0, y, z0), (x1, y, z0), (x1, y, z1), (x0, y, z1))], axis=1)


# ----------------------------------------------------------------------------------------------
# The street: cross-section, camera lane, streams of content

@dataclass
class _Street:
    lane_w: float
    lanes_r: int           # lanes driving away from the camera (right of x = 0)
    lanes_l: int           # oncoming lanes (left of x = 0)
    park_r: float          # parking lane widths (0: none)
    park_l: float
    bike_r: float          # bike lane between the driving lanes and the right parking lane
    curb_h: float
    sw_r: float
    sw_l: float
    cam_lane: int
    cam_x: float
    cam_h: float
    road: Color
    side_r: Color
    side_l: Color
    curb: Color
    paint: Color
    center: Color
    zone_w: np.ndarray     # probabilities of urban / suburban / park for each chunk side
    traffic: float         # densities in [0, 1]
    peds: float
    parked: float
    tram_lane: int | None
    sun: tuple[float, float, int] | None  # (shadow dx per m of height, dz per m, side lit) or None

    @property
    def R(self) -> float:
        return self.lanes_r * self.lane_w + self.bike_r + self.park_r

    @property
    def L(self) -> float:
        return max(0.3, self.lanes_l * self.lane_w + self.park_l)

    def lane_x(self, lane: int) -> float:
        """Centre of lane `lane`: 0, 1, .. drive away right of x = 0; -1, -2, .. come towards us."""
        return (lane + 0.5) * self.lane_w


def _make_street(rng: np.random.Generator) -> _Street:
    lane_w = rng.uniform(2.9, 3.6)
    lanes_r = int(rng.choice([1, 2, 3], p=[0.5, 0.38, 0.12]))
    lanes_l = int(rng.choice([0, 1, 2], p=[0.15, 0.6, 0.25]))
    park_r = rng.uniform(2.0, 2.5) if rng.random() < 0.6 else 0.0
    park_l = rng.uniform(2.0, 2.5) if rng.random() < 0.4 else 0.0
    bike_r = rng.uniform(1.3, 1.8) if rng.random() < 0.35 else 0.0
    cam_lane = int(rng.integers(lanes_r))
    cam_x = (cam_lane + 0.5) * lane_w + rng.uniform(-0.3, 0.3)
    tram_lane = None
    if rng.random() < 0.1:
        others = [i for i in range(lanes_r) if i != cam_lane] + [-1 - j for j in range(lanes_l)]
        tram_lane = int(_pick(rng, others)) if others else None
    road = _jit(rng, _pick(rng, ROAD_RGB), 6)
    side_rgb = _pick(rng, SIDEWALK_RGB)
    side = _jit(rng, side_rgb, 8)
    zone = rng.dirichlet((3.0, 1.5, 0.8))
    sun = None
    if rng.random() < 0.5:
        sun = (rng.uniform(0.3, 1.4), rng.uniform(-0.8, 0.8), 1 if rng.random() < 0.5 else -1)
    return _Street(lane_w, lanes_r, lanes_l, park_r, park_l, bike_r, rng.uniform(0.1, 0.18),
                   rng.uniform(1.8, 5.0), rng.uniform(1.8, 5.0), cam_lane, cam_x, rng.uniform(1.2, 1.7),
                   road, side, side if rng.random() < 0.7 else _jit(rng, _pick(rng, SIDEWALK_RGB), 8),
                   _jit(rng, [0.85 * c for c in side_rgb], 6),  # kerb: a darker sidewalk colour
                   _jit(rng, (225, 225, 220), 8),
                   _jit(rng, (230, 190, 60), 10) if rng.random() < 0.3 else _jit(rng, (225, 225, 220), 8),
                   zone, rng.uniform(0.2, 1.0), rng.uniform(0.15, 1.0), rng.uniform(0.3, 0.95),
                   tram_lane, sun)


def _gen_static(rng: np.random.Generator, st: _Street, z0: float, z1: float, video: bool,
                f_px: float) -> list[_Item]:
    """Everything that does not move in one chunk: ground patches, roadside, street furniture."""
    items: list[_Item] = []
    view = (st.cam_x, st.cam_h)
    # A still image is only seen from z = 0: furniture beyond FAR_STREET would be culled anyway.
    furnish = video or z0 < FAR_STREET
    for side in (1, -1):
        items.extend(_gen_side(rng, st, side, z0, z1, view, f_px, furnish))
    if not furnish:
        return items
    # Road surface repairs and manholes: still road, different colour.
    for _ in range(int(rng.poisson(1.2))):
        x = rng.uniform(-st.L, st.R - 1)
        z = rng.uniform(z0, z1 - 4)
        items.append(_GroundQuads(ROAD, _ground_rect(x, x + rng.uniform(0.8, 3), 0.0, z, z + rng.uniform(1, 4)),
                                  _jit(rng, _shade(st.road, rng.uniform(0.8, 1.15)), 4), "road patch"))
    if rng.random() < 0.2:  # zebra crossing
        zc = rng.uniform(z0 + 2, z1 - 6)
        w = rng.uniform(3.0, 4.5)
        xs = np.arange(-st.L + 0.3, st.R - 0.5, 1.0)
        items.append(_GroundQuads(ROAD, _ground_rect(xs, xs + 0.5, 0.0, zc, zc + w), st.paint, "zebra crossing"))
        if not video:  # people crossing (a moving camera would drive through them)
            for _ in range(int(rng.poisson(2.0 * st.peds))):
                items.append(_Person(rng, rng.uniform(-st.L, st.R), 0.0, rng.uniform(zc + 0.5, zc + w - 0.5),
                                     True, True))
    if not video:
        for _ in range(int(rng.poisson(0.4 * st.peds))):  # jaywalkers
            items.append(_Person(rng, rng.uniform(-st.L, st.R), 0.0, rng.uniform(z0, z1), True, True))
    return items


def _gen_side(rng: np.random.Generator, st: _Street, side: int, z0: float, z1: float,
              view: tuple[float, float], f_px: float, furnish: bool) -> list[_Item]:
    """One side of the street in one chunk: sidewalk furniture and the roadside beyond it."""
    edge = st.R if side > 0 else st.L        # distance of the kerb from x = 0
    sw = st.sw_r if side > 0 else st.sw_l
    y = st.curb_h
    zone = int(rng.choice(3, p=st.zone_w))
    grass = (0.0 if rng.random() < 0.8 else rng.uniform(0.8, 2.5)) if zone == 0 else (
        rng.uniform(1.0, 4.0) if zone == 1 else rng.uniform(3.0, 8.0))
    outer = edge + sw                        # outer edge of the sidewalk
    front = outer + grass                    # frontage line: walls, fences, facades
    X = lambda d: side * d                   # noqa: E731  distance from centre -> world x
    items: list[_Item] = []
    # Ground beyond the sidewalk: grass, or pavement in the city.
    beyond = TERRAIN if zone or grass or rng.random() < 0.4 else SIDEWALK
    col = _jit(rng, _pick(rng, TERRAIN_RGB), 8) if beyond == TERRAIN else _jit(rng, _pick(rng, SIDEWALK_RGB), 8)
    a, b = sorted((X(outer), X(outer + 60)))
    items.append(_GroundQuads(beyond, _ground_rect(a, b, y, z0, z1), col, "ground"))
    items.extend(_gen_frontage(rng, st, side, zone, front, y, z0, z1, view, f_px))
    if furnish:
        items.extend(_gen_furniture(rng, st, side, zone, edge, sw, y, z0, z1))
    return items


def _gen_frontage(rng: np.random.Generator, st: _Street, side: int, zone: int, front: float, y: float,
                  z0: float, z1: float, view: tuple[float, float], f_px: float) -> list[_Item]:
    """What lines the street beyond the sidewalk, by zone: 0 city, 1 suburb, 2 park."""
    X = lambda d: side * d  # noqa: E731
    items: list[_Item] = []
    z = z0
    while z < z1 - 1:
        if zone == 0:      # city: a row of buildings with occasional gaps
            w = min(rng.uniform(8, 30), z1 - z)
            if rng.random() < 0.85:
                items.append(_building(rng, side, X(front + rng.uniform(0, 0.6) * (rng.random() < 0.3)), y,
                                       z, z + w, rng.uniform(8, 28), view, f_px))
            else:
                items.extend(_gap_filler(rng, side, X(front), y, z, z + w, view, f_px, back=X(front + 6)))
        elif zone == 1:    # suburb: fences / walls / hedges, houses set back, garden trees
            w = min(rng.uniform(10, 20), z1 - z)
            kind = rng.random()
            if kind < 0.35:
                items.append(_fence(rng, side, X(front), y, z, z + w - rng.uniform(0, 2)))
            elif kind < 0.6:
                items.append(_wall(rng, side, X(front), y, z, z + w - rng.uniform(0, 2), view))
            elif kind < 0.8:
                items.append(_hedge(rng, side, X(front), y, z, z + w - rng.uniform(0, 2), view))
            setback = rng.uniform(3, 8)
            bw = min(rng.uniform(7, 14), w - 1.5)
            if rng.random() < 0.8 and bw > 4:
                items.append(_building(rng, side, X(front + setback), y, z + 1, z + 1 + bw,
                                       rng.uniform(5, 11), view, f_px))
            for _ in range(int(rng.integers(0, 3))):
                items.append(_Tree(rng, 1, X(front + rng.uniform(1, setback)), y, rng.uniform(z, z + w)))
        else:              # park: grass, trees, bushes, an occasional low fence, distant blocks
            w = min(rng.uniform(10, 25), z1 - z)
            if rng.random() < 0.3:
                items.append(_fence(rng, side, X(front), y, z, z + w))
            for _ in range(int(rng.integers(1, 5))):
                items.append(_Tree(rng, 1, X(front + rng.uniform(0.5, 25)), y, rng.uniform(z, z + w),
                                   rng.uniform(0.9, 1.5)))
            for _ in range(int(rng.integers(0, 4))):
                items.append(_Bush(rng, 1, X(front + rng.uniform(0.3, 6)), y, rng.uniform(z, z + w)))
            if rng.random() < 0.4:
                items.append(_building(rng, side, X(front + rng.uniform(25, 45)), y, z, z + w,
                                       rng.uniform(10, 30), view, f_px))
        z += w
    return items


def _gap_filler(rng: np.random.Generator, side: int, x: float, y: float, z0: float, z1: float,
                view: tuple[float, float], f_px: float, back: float) -> list[_Item]:
    """A gap between city blocks: maybe a wall or fence, a tree, a building further back."""
    r = rng.random()
    out: list[_Item] = []
    if r < 0.35:
        out.append(_wall(rng, side, x, y, z0, z1, view))
    elif r < 0.65:
        out.append(_fence(rng, side, x, y, z0, z1))
    if rng.random() < 0.6:
        out.append(_Tree(rng, 1, back, y, (z0 + z1) / 2, rng.uniform(1.0, 1.4)))
    if rng.random() < 0.5:
        out.append(_building(rng, side, back + side * rng.uniform(5, 15), y, z0, z1,
                             rng.uniform(10, 30), view, f_px))
    return out


def _gen_furniture(rng: np.random.Generator, st: _Street, side: int, zone: int, edge: float, sw: float,
                   y: float, z0: float, z1: float) -> list[_Item]:
    """Lamps, signs, lights, street trees, bikes and standing people on one sidewalk."""
    X = lambda d: side * d  # noqa: E731
    items: list[_Item] = []
    L = z1 - z0
    spacing = rng.uniform(18, 35)
    for z in np.arange(z0 + rng.uniform(0, spacing), z1, spacing):
        items.append(_Lamp(rng, X(edge + 0.4), y, z, -side))
    for _ in range(int(rng.poisson(1.0 * L / 40))):
        items.append(_SignPole(rng, X(edge + rng.uniform(0.3, 0.7)), y, rng.uniform(z0, z1)))
    if rng.random() < 0.35:
        items.append(_LightPole(rng, X(edge + 0.5), y, rng.uniform(z0, z1), -side))
    if sw > 2.6 and rng.random() < (0.55 if zone == 0 else 0.3):
        step = rng.uniform(7, 13)
        for z in np.arange(z0 + rng.uniform(0, step), z1, step):
            items.append(_Tree(rng, 2, X(edge + rng.uniform(0.8, 1.3)), y, z, rng.uniform(0.8, 1.1)))
    for _ in range(int(rng.poisson(0.5))):
        items.append(_Bush(rng, 2, X(edge + sw - rng.uniform(0.3, 0.8)), y, rng.uniform(z0, z1)))
    for _ in range(int(rng.poisson(1.0))):  # parked bicycles, mostly along the building side
        xb = edge + sw - 0.5 if rng.random() < 0.6 else edge + 0.5
        items.append(_TwoWheeler(rng, X(xb), y, rng.uniform(z0, z1), False, False, rng.uniform(0.4, 1.0)))
    if rng.random() < 0.2:
        items.append(_TwoWheeler(rng, X(edge + 0.8), y, rng.uniform(z0, z1), True, False, rng.uniform(0.3, 1.0)))
    for _ in range(int(rng.poisson(1.2 * st.peds))):  # people standing around
        items.append(_Person(rng, X(edge + rng.uniform(0.4, max(0.5, sw - 0.4))), y, rng.uniform(z0, z1),
                             rng.random() < 0.5, False))
    return items


def _gen_lane(rng: np.random.Generator, st: _Street, lane: int, z0: float, z1: float) -> list[_Item]:
    """Moving vehicles in one lane and chunk (positions in the lane's moving frame)."""
    xc = st.lane_x(lane)
    facing = 1 if lane >= 0 else -1
    view = (st.cam_x, st.cam_h)
    items: list[_Item] = []
    s = z0 + rng.uniform(0, 30)
    tram = lane == st.tram_lane
    while True:
        if tram:
            kind = "tram"
        else:
            kind = str(rng.choice(["car", "van", "truck", "bus", "moto"], p=[0.76, 0.07, 0.07, 0.06, 0.04]))
        if kind == "moto":
            length = 2.0
            if s + length > z1:
                break
            if not (lane == st.cam_lane and -length - 3 < s < 8):
                items.append(_TwoWheeler(rng, xc + rng.uniform(-0.5, 0.5), 0.0, s, True, True,
                                         rng.uniform(0.05, 0.2)))
        else:
            mesh, length = _vehicle(rng, kind, xc + rng.uniform(-0.25, 0.25), s, facing, view, st.road)
            if s + length > z1:
                break
            # Keep the camera's own car out of other cars: nothing right ahead or around it.
            if not (lane == st.cam_lane and -length - 3 < s < 8):
                items.append(mesh)
        s += length + (rng.uniform(40, 120) if tram else rng.uniform(4, 12) + rng.exponential(40 * (1.1 - st.traffic)))
    return items


def _gen_parked(rng: np.random.Generator, st: _Street, z0: float, z1: float) -> list[_Item]:
    view = (st.cam_x, st.cam_h)
    items: list[_Item] = []
    for side, width in ((1, st.park_r), (-1, st.park_l)):
        if width <= 0:
            continue
        xc = side * ((st.R if side > 0 else st.L) - width / 2)
        s = z0 + rng.uniform(0, 6)
        while True:
            kind = str(rng.choice(["car", "van", "truck"], p=[0.86, 0.1, 0.04]))
            facing = side if rng.random() < 0.8 else -side
            mesh, length = _vehicle(rng, kind, xc + rng.uniform(-0.15, 0.15), s, facing, view, st.road)
            if s + length > z1:
                break
            if rng.random() < st.parked:
                items.append(mesh)
            s += length + rng.uniform(0.5, 2.5)
    return items


def _gen_walkers(rng: np.random.Generator, st: _Street, side: int, away: bool, z0: float, z1: float
                 ) -> list[_Item]:
    edge = st.R if side > 0 else st.L
    sw = st.sw_r if side > 0 else st.sw_l
    n = int(rng.poisson(1.6 * st.peds * (z1 - z0) / CHUNK))
    return [_Person(rng, side * (edge + rng.uniform(0.4, max(0.5, sw - 0.4))), st.curb_h, rng.uniform(z0, z1),
                    False, True, facing_away=away) for _ in range(n)]


def _gen_riders(rng: np.random.Generator, st: _Street, z0: float, z1: float) -> list[_Item]:
    xc = st.lanes_r * st.lane_w + st.bike_r / 2
    n = int(rng.poisson(1.2 * (z1 - z0) / CHUNK))
    return [_TwoWheeler(rng, xc + rng.uniform(-0.2, 0.2), 0.0, rng.uniform(z0, z1), rng.random() < 0.15, True,
                        rng.uniform(0.05, 0.25)) for _ in range(n)]


class _Stream:
    """Content moving at one speed, generated lazily per chunk from (base seed, key, chunk)."""

    def __init__(self, base: int, key: int, speed: float,
                 gen: Callable[[np.random.Generator, float, float], list[_Item]], far: float = FAR_STREET) -> None:
        self.base, self.key, self.speed, self.gen, self.far = base, key, speed, gen, far
        self.cache: dict[int, list[_Item]] = {}

    def items(self, lo: float, hi: float, forget_behind: bool = False) -> Iterator[_Item]:
        # Items never extend past their own chunk, so these chunks hold all of [lo, hi].
        first, last = math.floor((lo - CHUNK_ORIGIN) / CHUNK), math.floor((hi - CHUNK_ORIGIN) / CHUNK)
        for c in range(first, last + 1):
            if c not in self.cache:
                rng = np.random.default_rng([self.base, self.key, c + (1 << 30)])
                z0 = CHUNK_ORIGIN + c * CHUNK
                self.cache[c] = self.gen(rng, z0, z0 + CHUNK)
            yield from self.cache[c]
        if forget_behind:  # a video only moves forward: drop chunks left behind
            for c in [c for c in self.cache if c < first]:
                del self.cache[c]


class _World:
    """A street, its camera, its lighting and lazily generated contents."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, video: bool,
                 cam_speed: float = 0.0) -> None:
        self.h, self.w, self.video = height, width, video
        self.st = st = _make_street(rng)
        self.f = width * rng.uniform(0.6, 1.0)
        self.horizon = height * rng.uniform(0.36, 0.5)
        self.yaw = rng.uniform(-0.06, 0.06)
        self.roll = 0.0 if video else rng.uniform(-0.02, 0.02)
        self.far = rng.uniform(130, 230)       # distance of the skyline backdrop
        self.speed = cam_speed
        self.sky = self._sky(rng)
        self.terrain = _jit(rng, _pick(rng, TERRAIN_RGB), 8)
        self.backdrop = self._backdrop(rng)
        self.hood = self._hood(rng)
        base = int(rng.integers(1 << 62))
        f = self.f
        self.streams = [_Stream(base, 0, 0.0, lambda r, a, b: _gen_static(r, st, a, b, video, f), self.far),
                        _Stream(base, 1, 0.0, lambda r, a, b: _gen_parked(r, st, a, b))]
        for lane in list(range(st.lanes_r)) + [-1 - j for j in range(st.lanes_l)]:
            if lane == st.cam_lane:
                v = cam_speed                 # our lane moves with us: no rear-ending
            elif lane >= 0:
                v = max(0.0, cam_speed + rng.uniform(-4, 4))
            else:
                v = -rng.uniform(8, 14)
            self.streams.append(_Stream(base, 20 + lane, v, lambda r, a, b, ln=lane: _gen_lane(r, st, ln, a, b)))
        for side in (1, -1):   # pedestrians walking away from / towards the camera on each sidewalk
            for k, v in enumerate((rng.uniform(0.9, 1.6), -rng.uniform(0.9, 1.6))):
                self.streams.append(_Stream(base, 30 + 2 * (side > 0) + k, v if video else 0.0,
                                            lambda r, a, b, sd=side, aw=v > 0: _gen_walkers(r, st, sd, aw, a, b)))
        if st.bike_r > 0:
            self.streams.append(_Stream(base, 40, rng.uniform(3.5, 6.0) if video else 0.0,
                                        lambda r, a, b: _gen_riders(r, st, a, b)))

    def _sky(self, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < 0.65:
            top, hor = _jit(rng, (62, 112, 188), 12), _jit(rng, (178, 202, 226), 10)
        else:
            g = rng.uniform(150, 215)
            top, hor = _jit(rng, (g - 20, g - 15, g - 5), 5), _jit(rng, (g + 15, g + 17, g + 20), 4)
        k = np.clip(np.arange(self.h, dtype=np.float32) / max(1.0, self.horizon), 0, 1)[:, None] ** 0.7
        return (np.array(top, np.float32) * (1 - k) + np.array(hor, np.float32) * k).astype(np.uint8)

    def _backdrop(self, rng: np.random.Generator) -> list[tuple[str, int, np.ndarray, Color]]:
        """Distant skyline blocks and tree lines covering the horizon (hazy colours)."""
        haze = tuple(int(c) for c in self.sky[int(max(0, self.horizon - 2))])  # BGR already
        out = []
        x, span = -self.far, self.far
        while x < span:
            w = rng.uniform(8, 50)
            if rng.random() < 0.65:
                h = rng.uniform(6, 45)
                col = _mix(_jit(rng, _pick(rng, BUILDING_RGB), 10), haze, rng.uniform(0.35, 0.65))
                block = np.array([[(x, -1, 0), (x + w, -1, 0), (x + w, h, 0), (x, h, 0)]])
                out.append(("building", BUILDING, block, col))
            else:
                h = rng.uniform(5, 15)
                col = _mix(_jit(rng, _pick(rng, VEG_RGB), 8), haze, rng.uniform(0.25, 0.5))
                k = 9
                a = np.linspace(0, math.pi, k)
                top = np.stack((x + w / 2 - np.cos(a) * w / 2, h * (0.6 + 0.4 * np.sin(a)), np.zeros(k)), 1)
                poly = np.concatenate([[(x, -1, 0)], top, [(x + w, -1, 0)]])[None]
                out.append(("vegetation", VEGETATION, poly, col))
            x += w * rng.uniform(0.6, 1.0)
        return out

    def _hood(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, Color, Color] | None:
        """The ego vehicle's bonnet (label 255) in about half of the worlds, at most
        HOOD_MAX_FRAC of the height."""
        if rng.random() < 0.5:
            return None
        h, w = self.h, self.w
        top = h * rng.uniform(0.04, HOOD_MAX_FRAC * 0.9)
        uc, a = w * rng.uniform(0.4, 0.6), w * rng.uniform(0.55, 0.9)
        u = np.linspace(-0.5, w + 0.5, 33)
        v = h - top * np.clip(1 - ((u - uc) / a) ** 2, 0, 1)
        poly = np.concatenate([np.stack((u, v), 1), [(w + 0.5, h + 2), (-0.5, h + 2)]])
        # A reflection band strictly inside the hood outline (so still only ignore pixels).
        band = np.concatenate([np.stack((u, v + 0.3 * (h - v)), 1), np.stack((u, v + 0.42 * (h - v)), 1)[::-1]])
        paint = _jit(rng, _pick(rng, CAR_RGB), 6)
        return poly, band, paint, _mix(paint, _bgr((235, 235, 240)), rng.uniform(0.15, 0.4))

    # ---- rendering

    def camera(self, t: float, bob: float = 0.0) -> Camera:
        return Camera(self.w, self.h, self.f, self.horizon + bob, self.st.cam_h, self.st.cam_x,
                      self.speed * t, self.yaw, self.roll)

    def render(self, cv: Canvas, cam: Camera, t: float) -> None:
        ctx = _Ctx(cv, cam)
        cv.begin("sky", SKY)
        cv.rows(self.sky)
        cv.begin("ground", TERRAIN)
        # Ground below the horizon (seen only far away, between roadside objects).
        cv.fill([cam.screen(np.array([-4.0, 4.0, 4.0, -4.0]) * self.w, np.array([0, 0, 4.0, 4.0]) * self.h)],
                self.terrain)
        zb = cam.z + self.far  # the skyline stays at a fixed distance ahead, like anything far away
        for kind, cls, P, col in self.backdrop:
            cv.begin(kind, cls)
            ctx.quads(P + (0.0, 0.0, zb), col)
        items = self._visible_items(cam, t)
        self._draw_road(ctx, cam, [it for it in items if it[0].layer == 0], t)
        self._cast_shadows(ctx, [it for it in items if it[0].layer == 1])
        side = [it for it in items if it[0].layer == 1]
        side.sort(key=lambda it: (-abs(it[0].x - cam.x), -(it[0].s_lo + it[1])))
        for it, dz in side:
            it.draw(ctx, dz, t)
        street = [it for it in items if it[0].layer == 2]
        street.sort(key=lambda it: -(it[0].s_lo + it[1]))
        for it, dz in street:
            it.draw(ctx, dz, t)
        if self.hood is not None:
            poly, band, paint, shine = self.hood
            cv.begin("ego vehicle", IGNORE)
            cv.fill([poly], paint)
            cv.fill([band], shine)

    def _visible_items(self, cam: Camera, t: float) -> list[tuple[_Item, float]]:
        out = []
        lo = cam.z - 1.0   # even yawed, the camera cannot see anything further behind
        for stream in self.streams:
            dz = stream.speed * t
            for it in stream.items(lo - dz, cam.z + stream.far - dz, forget_behind=self.video):
                z_lo, z_hi = it.s_lo + dz, it.s_hi + dz
                far = FAR_STREET if it.layer == 2 else self.far
                if z_hi >= lo and z_lo <= cam.z + far:
                    out.append((it, dz))
        return out

    def _draw_road(self, ctx: _Ctx, cam: Camera, ground: list[tuple[_Item, float]], t: float) -> None:
        st, cv = self.st, ctx.cv
        z0, z1 = cam.z - 2.0, cam.z + self.far
        R, L, y = st.R, st.L, st.curb_h
        cv.begin("road", ROAD)
        ctx.quads(_ground_rect(-L, R, 0.0, z0, z1), st.road)
        cv.begin("sidewalk", SIDEWALK)
        ctx.quads(_ground_rect(R, R + st.sw_r, y, z0, z1), st.side_r)
        ctx.quads(_ground_rect(-L - st.sw_l, -L, y, z0, z1), st.side_l)
        for x in (R, -L):  # kerb faces, visible because the camera is between them
            ctx.quads(np.array([[(x, 0, z0), (x, 0, z1), (x, y, z1), (x, y, z0)]]), st.curb)
        for it, dz in ground:
            it.draw(ctx, dz, t)
        self._draw_markings(ctx, cam)

    def _draw_markings(self, ctx: _Ctx, cam: Camera) -> None:
        """Lane lines fixed to the road, so they stream past a moving camera."""
        st = self.st
        ctx.cv.begin("road marking", ROAD)
        z0, z1 = cam.z - 2.0, cam.z + min(self.far, 150.0)
        lines: list[tuple[float, float, bool, Color]] = []   # (x, width, dashed, colour)
        if st.lanes_l:
            lines.append((0.0, 0.15, False, st.center))
        for i in range(1, st.lanes_r):
            lines.append((i * st.lane_w, 0.12, True, st.paint))
        for j in range(1, st.lanes_l):
            lines.append((-j * st.lane_w, 0.12, True, st.paint))
        lines.append((st.lanes_r * st.lane_w, 0.15, False, st.paint))
        if st.bike_r:
            lines.append((st.lanes_r * st.lane_w + st.bike_r, 0.12, False, st.paint))
        if st.lanes_l and st.park_l:
            lines.append((-st.lanes_l * st.lane_w, 0.15, False, st.paint))
        dash, period = 3.0, 9.0
        k0 = math.floor(z0 / period)
        starts = (k0 + np.arange(int((z1 - z0) / period) + 2)) * period
        for x, w, dashed, col in lines:
            a, b = (starts, starts + dash) if dashed else (z0, z1)
            ctx.quads(_ground_rect(x - w / 2, x + w / 2, 0.0, a, b), col)
        if st.tram_lane is not None:
            xc = st.lane_x(st.tram_lane)
            for x in (xc - 0.75, xc + 0.75):
                ctx.quads(_ground_rect(x - 0.04, x + 0.04, 0.0, z0, z1), _shade(st.road, 0.6))

    def _cast_shadows(self, ctx: _Ctx, side: list[tuple[_Item, float]]) -> None:
        """Sunlit scenes: buildings on the sun's side throw shadows across the street."""
        if self.st.sun is None:
            return
        kx, kz, lit = self.st.sun
        polys = []
        for it, dz in side:
            casts = getattr(it, "casts", None)
            if casts is None or it.x * lit <= 0:
                continue
            x, a, b, h = casts
            a, b = a + dz, b + dz
            x2 = x - lit * kx * h
            polys.append(np.array([(x, 0, a), (x, 0, b), (x2, 0, b + kz * h), (x2, 0, a + kz * h)]))
        if polys:
            P = ctx.polys3d(np.array(polys))
            ctx.cv.shade(list(P))


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


# ----------------------------------------------------------------------------------------------
# Public API

@dataclass
class SceneDebug:
    """What `render_scene(record=True)` adds: the image before photometric effects and every
    drawn part in painter's order (later parts cover earlier ones)."""
    clean: np.ndarray
    parts: list[Part]


def _check_size(height: int, width: int) -> None:
    if not (MIN_SIZE <= height <= MAX_SIZE and MIN_SIZE <= width <= MAX_SIZE):
        raise ValueError(f"image size {height}x{width} outside [{MIN_SIZE}, {MAX_SIZE}] pixels")


def render_scene(rng: np.random.Generator, height: int, width: int, record: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, SceneDebug | None]:
    """One random street scene: (BGR uint8 image (H, W, 3), trainId labels (H, W), debug info
    if `record`)."""
    _check_size(height, width)
    world = _World(rng, height, width, video=False)
    cv = Canvas(height, width, record)
    world.render(cv, world.camera(0.0), 0.0)
    photo = Photometric.sample(rng)
    img = photo.apply(rng, cv.img, cv.lab, cv.shadow)
    return img, cv.lab, (SceneDebug(cv.img, cv.parts) if record else None)


def generate_scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One random street scene: BGR uint8 image (H, W, 3) and uint8 trainId labels (H, W)."""
    img, lab, _ = render_scene(rng, height, width)
    return img, lab


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator for image `index` of `split`: independent of every other image."""
    return np.random.default_rng([seed, SPLIT_CODES[split], index])


class SceneSequence:
    """A camera driving down one street: frame k at time k / fps. Frames are independent of
    each other's order (the world is generated lazily, per chunk, from the seed)."""

    def __init__(self, seed: int, height: int, width: int, fps: float = 10.0) -> None:
        _check_size(height, width)
        self.seed, self.fps = seed, fps
        rng = np.random.default_rng([seed, _VIDEO_WORLD])
        speed = rng.uniform(6.0, 12.0)
        self.world = _World(rng, height, width, video=True, cam_speed=speed)
        self.photo = Photometric.sample(rng)
        self.bob = rng.uniform(0.0, 0.004) * height

    def frame(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        t = k / self.fps
        cam = self.world.camera(t, self.bob * math.sin(2 * math.pi * 1.3 * t))
        cv = Canvas(self.world.h, self.world.w)
        self.world.render(cv, cam, t)
        rng = np.random.default_rng([self.seed, _VIDEO_FRAME, k])
        tex_rng = np.random.default_rng([self.seed, _VIDEO_TEXTURE])
        return self.photo.apply(rng, cv.img, cv.lab, cv.shadow, tex_rng), cv.lab


def generate_video_frames(seed: int, n: int, height: int, width: int, fps: float = 10.0
                          ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Frames 0 .. n-1 of `SceneSequence(seed, height, width, fps)` as (BGR image, labels)."""
    seq = SceneSequence(seed, height, width, fps)
    for k in range(n):
        yield seq.frame(k)


def atomic_write_png(path: Path, array: np.ndarray) -> None:
    """Encode, then write atomically (emaseg.atomic): a crash never leaves a truncated PNG under
    the final name, and the hidden `.NAME.*.tmp` name matches no loader pattern."""
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise OSError(f"could not encode {path}")
    write_atomic(path, buf.tobytes())


def image_paths(out: Path, split: str, index: int) -> tuple[Path, Path]:
    """(image, label) paths of image `index` of `split` in the Cityscapes layout."""
    stem = f"synth_{split}_{index:06d}"
    return (out / "leftImg8bit" / split / "synth" / f"{stem}_leftImg8bit.png",
            out / "gtFine" / split / "synth" / f"{stem}_gtFine_labelTrainIds.png")


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True)


def write_dataset(out: str | Path, train: int, val: int, size: tuple[int, int], seed: int = 0,
                  progress: bool = True) -> dict:
    """Write `train` + `val` scenes in the Cityscapes layout under `out`. Returns a summary:
    counts, seconds, images/s and the fraction of pixels per class."""
    out = Path(out)
    h, w = size
    _check_size(h, w)
    counts = np.zeros(256, np.int64)
    t0 = time.perf_counter()
    # PNG encoding (cv2 releases the GIL) overlaps generating the next scene; a short queue
    # bounds memory and surfaces write errors promptly.
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending: deque[Future] = deque()
        for split, n in (("train", train), ("val", val)):
            img_path, lab_path = image_paths(out, split, 0)
            img_path.parent.mkdir(parents=True, exist_ok=True)
            lab_path.parent.mkdir(parents=True, exist_ok=True)
            bar = _progress(n, split, progress)
            for i in range(n):
                img, lab = generate_scene(scene_rng(seed, split, i), h, w)
                pending.append(writer.submit(_write_pair, *image_paths(out, split, i), img, lab))
                while len(pending) > 2:
                    pending.popleft().result()
                counts += np.bincount(lab.ravel(), minlength=256)
                if bar is not None:
                    bar.update(1)
            while pending:
                pending.popleft().result()
            if bar is not None:
                bar.close()
    secs = time.perf_counter() - t0
    total = max(1, int(counts.sum()))
    # Images of an earlier, bigger run are left alone but reported: a loader would read them too.
    stale = 0
    for split, n in (("train", train), ("val", val)):
        for p in image_paths(out, split, 0)[0].parent.glob("*_leftImg8bit.png"):
            m = re.fullmatch(rf"synth_{split}_(\d+)_leftImg8bit\.png", p.name)
            stale += m is None or int(m.group(1)) >= n
    return {"train": train, "val": val, "size": (h, w), "seconds": secs,
            "images_per_s": (train + val) / max(secs, 1e-9), "stale": stale,
            "class_fraction": {i: counts[i] / total for i in list(range(NUM_CLASSES)) + [IGNORE] if counts[i]}}


def _write_pair(img_path: Path, lab_path: Path, img: np.ndarray, lab: np.ndarray) -> None:
    atomic_write_png(lab_path, lab)      # label first: an image on disk always has its label
    atomic_write_png(img_path, img)


def video_label_dir(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.stem + "_labels") if path.suffix else path.with_name(path.name + "_labels")


def _video_error(what: str, folder: Path) -> OSError:
    """OpenCV's writer gives no reason for a failure; a full disk is the usual one, so say so
    when the folder's file system has (next to) no room left."""
    st = os.statvfs(folder)
    if st.f_bavail * st.f_frsize < 1 << 20:
        return OSError(errno.ENOSPC, f"{what}: {os.strerror(errno.ENOSPC)}")
    return OSError(what)


def write_video(path: str | Path, frames: int, fps: float, size: tuple[int, int], seed: int = 0,
                progress: bool = True) -> dict:
    """Write an mp4 ('mp4v') of a drive down a street plus `<stem>_labels/frame_{k:06d}.png`.
    The video is written under a temporary name, re-opened to check the frame count and size,
    and only then renamed into place."""
    path = Path(path)
    h, w = size
    _check_size(h, w)
    if h % 2 or w % 2:
        raise ValueError(f"video size {h}x{w} must be even (mp4v would silently crop it)")
    labels = video_label_dir(path)
    made_labels = not labels.exists()
    labels.mkdir(parents=True, exist_ok=True)
    for old in labels.glob("frame_*.png"):  # a longer earlier run: keep labels == video frames
        if old.stem[6:].isdigit() and int(old.stem[6:]) >= frames:
            old.unlink()
    t0 = time.perf_counter()
    bar = _progress(frames, "video", progress)
    try:
        # OpenCV picks the container from the extension, so the temporary name keeps it.
        with atomic_path(path, suffix=path.suffix or ".mp4") as tmp:
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
            if not writer.isOpened():
                raise _video_error("OpenCV cannot open an mp4v writer", path.parent)
            try:
                for k, (img, lab) in enumerate(generate_video_frames(seed, frames, h, w, fps)):
                    writer.write(img)
                    atomic_write_png(labels / f"frame_{k:06d}.png", lab)
                    if bar is not None:
                        bar.update(1)
            finally:
                writer.release()
            n, vw, vh = _probe_video(tmp)  # a full disk shows here: OpenCV's writer does not report it
            if (n, vw, vh) != (frames, w, h):
                raise _video_error(f"the video re-opened with {n} frames of {vw}x{vh}, expected {frames} of "
                                   f"{w}x{h}", path.parent)
    except BaseException:
        if made_labels:  # this run's own folder: no labels beside a video that was not written
            for k in range(frames):
                (labels / f"frame_{k:06d}.png").unlink(missing_ok=True)
            if not any(labels.iterdir()):
                labels.rmdir()
        raise
    finally:
        if bar is not None:
            bar.close()
    secs = time.perf_counter() - t0
    return {"path": str(path), "labels": str(labels), "frames": frames, "fps": fps, "seconds": secs}


def _probe_video(path: Path) -> tuple[int, int, int]:
    """(frames actually decodable, width, height)."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return 0, 0, 0
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        n = 0
        while cap.grab():
            n += 1
        return n, w, h
    finally:
        cap.release()


def colorize(lab: np.ndarray) -> np.ndarray:
    """BGR visualisation of a trainId map (ignore -> black)."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:NUM_CLASSES] = np.array(CITYSCAPES_PALETTE, np.uint8)[:, ::-1]
    return lut[lab]
