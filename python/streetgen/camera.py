"""The pinhole camera and world-space drawing: 3-D polygons clipped to the near plane, flat
sprites facing the camera, and the faces of boxes."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .canvas import Canvas, clip_poly
from .colors import Color


NEAR = 0.5                 # near clipping plane (m): geometry closer than this is cut away


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


class Sprite:
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


class Context:
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
            c = clip_poly(c, 2, NEAR)
            if len(c) >= 3:
                out.append(self.cam.persp(c))
        return out

    def quads(self, P: np.ndarray, color: Color) -> None:
        """Fill world polygons (n, k, 3) or (k, 3)."""
        self.cv.fill(self.polys3d(P if P.ndim == 3 else P[None]), color)

    def sprite(self, x: float, y: float, z: float, size_m: float = 2.0) -> Sprite | None:
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
        return Sprite(self.cv, self.cam, a, zc)


def face_sub(face: np.ndarray, h0, h1, v0, v1) -> np.ndarray:
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


def box_faces(x0: float, x1: float, y0: float, y1: float, z0: float, z1: float,
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
