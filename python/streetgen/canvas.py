"""Drawing: one call fills the same shape into the image and the label map (and, in record mode,
the current part's mask), so every pixel's label is the class of what was drawn there last."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from .colors import Color


SHIFT = 3                  # fixed-point bits for cv2 drawing: sub-pixel edges, smooth video motion
_ONE = float(1 << SHIFT)


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


def clip_poly(poly: np.ndarray, axis: int, bound: float, keep_above: bool = True) -> np.ndarray:
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
                    p = clip_poly(clip_poly(p, axis, -lim, True), axis, lim, False)
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
