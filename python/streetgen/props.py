"""Scene items: the rigid-mesh base class and the street furniture and people drawn as sprites
(trees, bushes, lamps, sign and traffic-light poles, pedestrians, cyclists and motorcyclists).
Positions are in a stream's frame: world z = s + dz, with dz = speed * t."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from .camera import Context, NEAR, Sprite
from .colors import Color, HAIR_RGB, POLE_RGB, SKIN_RGB, VEG_RGB, jitter, pick, to_bgr
from .labels import BICYCLE, MOTORCYCLE, PERSON, POLE, RIDER, TRAFFIC_LIGHT, TRAFFIC_SIGN, VEGETATION


# ----------------------------------------------------------------------------------------------
# Scene items. Positions are in a stream's frame: world z = s + dz, with dz = speed * t.

Geo = list[tuple[np.ndarray, Color, float]]  # (world polygons (n, k, 3), colour, max distance)


class Item:
    layer = 2          # 0 ground, 1 roadside backdrop (sorted by lateral distance), 2 street
    s_lo = s_hi = 0.0  # extent along z in the stream frame, for culling
    x = 0.0            # lateral position, for sorting the roadside layer

    def draw(self, ctx: Context, dz: float, t: float) -> None:
        raise NotImplementedError


class Mesh(Item):
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

    def draw(self, ctx: Context, dz: float, t: float) -> None:
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


class Tree(Item):
    def __init__(self, rng: np.random.Generator, layer: int, x: float, y0: float, s: float,
                 scale: float = 1.0) -> None:
        self.layer, self.x, self.y0, self.s_lo = layer, x, y0, s
        self.s_hi = s
        u = rng.random(4)
        self.trunk_h, self.trunk_w = (1.6 + 1.8 * u[0]) * scale, (0.18 + 0.2 * u[1]) * scale
        self.conifer = u[2] < 0.2
        self.r = r = (1.4 + 1.8 * u[3]) * scale
        self.height = self.trunk_h + 2 * r
        self.trunk_col = jitter(rng, (92, 72, 52), 14)
        # Crown: overlapping ellipses drawn bottom-up; lower ones darker (cheap self-shadowing).
        n = int(rng.integers(3, 7))
        b = rng.random((n, 4))
        b = b[np.argsort(b[:, 1])]
        dy = (b[:, 1] * 1.1 - 0.5) * r
        rgb = np.asarray(pick(rng, VEG_RGB), np.float64) * (0.8 + 0.25 * (dy / r + 0.5))[:, None]
        bgr = np.clip(rgb + rng.normal(0.0, 8.0, (n, 3)), 0, 255).astype(int)[:, ::-1].tolist()
        self.blobs = [(du, y, ru, ry, tuple(c)) for du, y, ru, ry, c in
                      zip(((b[:, 0] - 0.5) * 1.1 * r).tolist(), (self.trunk_h + r + dy).tolist(),
                          (r * (0.55 + 0.3 * b[:, 2])).tolist(), (r * (0.5 + 0.3 * b[:, 3])).tolist(), bgr)]

    def draw(self, ctx: Context, dz: float, t: float) -> None:
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


class Bush(Item):
    def __init__(self, rng: np.random.Generator, layer: int, x: float, y0: float, s: float) -> None:
        self.layer, self.x, self.y0, self.s_lo, self.s_hi = layer, x, y0, s, s
        base = np.array(pick(rng, VEG_RGB), np.float64)
        w = rng.uniform(0.6, 2.0)
        self.blobs = [(rng.uniform(-0.5, 0.5) * w, rng.uniform(0.3, 0.6) * w, w * rng.uniform(0.3, 0.55),
                       w * rng.uniform(0.25, 0.45), jitter(rng, base, 10)) for _ in range(int(rng.integers(2, 5)))]
        self.size = w

    def draw(self, ctx: Context, dz: float, t: float) -> None:
        sp = ctx.sprite(self.x, self.y0, self.s_lo + dz, self.size)
        if sp is None:
            return
        ctx.cv.begin("bush", VEGETATION)
        for du, y, ru, ry, col in self.blobs:
            sp.ellipse(du, y, ru, ry, col)


class Lamp(Item):
    """Street lamp: pole with an arm over the road."""

    def __init__(self, rng: np.random.Generator, x: float, y0: float, s: float, toward: float) -> None:
        self.x, self.y0, self.s_lo, self.s_hi = x, y0, s, s
        self.h = rng.uniform(6.0, 9.0)
        self.w = rng.uniform(0.12, 0.22)
        self.arm = toward * rng.uniform(0.8, 2.4)
        self.col = jitter(rng, pick(rng, POLE_RGB), 6)
        self.head = jitter(rng, (70, 70, 72), 8)

    def draw(self, ctx: Context, dz: float, t: float) -> None:
        sp = ctx.sprite(self.x, self.y0, self.s_lo + dz, self.h)
        if sp is None:
            return
        ctx.cv.begin("pole", POLE)
        w = self.w
        sp.poly(((-w / 2, 0), (w / 2, 0), (w * 0.3, self.h), (-w * 0.3, self.h)), self.col)
        sp.line((0, self.h - 0.4), (self.arm, self.h), 0.08, self.col)
        sp.ellipse(self.arm, self.h - 0.05, 0.35, 0.1, self.head)


def _draw_post(item: SignPole | LightPole, ctx: Context, dz: float) -> Sprite | None:
    """The straight post under a sign or a traffic light (item has x, y0, s_lo, h, w, col);
    returns its sprite for what hangs on it, or None when it is off screen."""
    sp = ctx.sprite(item.x, item.y0, item.s_lo + dz, item.h)
    if sp is not None:
        ctx.cv.begin("pole", POLE)
        sp.rect(-item.w / 2, item.w / 2, 0, item.h, item.col)
    return sp


class SignPole(Item):
    """A pole carrying one or two traffic signs (front or back side visible)."""

    def __init__(self, rng: np.random.Generator, x: float, y0: float, s: float) -> None:
        self.x, self.y0, self.s_lo, self.s_hi = x, y0, s, s
        self.h = rng.uniform(2.4, 3.4)
        self.w = rng.uniform(0.06, 0.1)
        self.col = jitter(rng, pick(rng, POLE_RGB), 6)
        self.signs = []
        y = self.h
        for _ in range(1 if rng.random() < 0.7 else 2):
            size = rng.uniform(0.55, 0.85)
            shape = pick(rng, ("circle", "triangle", "yield", "square", "board", "octagon", "diamond"))
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
        return jitter(rng, rim, 8), jitter(rng, inner, 8), jitter(rng, (150, 150, 152), 10)

    def draw(self, ctx: Context, dz: float, t: float) -> None:
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


_LAMPS = (to_bgr((255, 40, 30)), to_bgr((255, 180, 20)), to_bgr((40, 240, 130)))  # red, amber, green
_LAMP_OFF = to_bgr((45, 45, 45))


class LightPole(Item):
    """Traffic light on a short post, or hanging from a mast arm over the road."""

    def __init__(self, rng: np.random.Generator, x: float, y0: float, s: float, toward: float) -> None:
        self.x, self.y0, self.s_lo, self.s_hi = x, y0, s, s
        self.mast = rng.random() < 0.5
        self.h = rng.uniform(5.5, 6.8) if self.mast else rng.uniform(2.6, 3.4)
        self.w = rng.uniform(0.1, 0.18)
        self.col = jitter(rng, pick(rng, POLE_RGB), 6)
        self.arm = toward * rng.uniform(3.0, 6.5) if self.mast else 0.0
        housing = jitter(rng, pick(rng, [(28, 28, 30), (60, 62, 60), (205, 172, 40)]), 6)
        n = 1 if not self.mast else int(rng.integers(1, 3))
        self.lights = []
        for i in range(n):
            u = self.arm * (0.55 + 0.4 * i) if self.mast else 0.0
            lit = int(rng.integers(3))
            self.lights.append((u, housing, lit, rng.random() < 0.8))

    def draw(self, ctx: Context, dz: float, t: float) -> None:
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


def _person_shapes(sp: Sprite, p: "Person", phase: float, seat: float | None = None) -> None:
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


class Person(Item):
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
        self.skin = jitter(rng, pick(rng, SKIN_RGB), 8)
        self.hair = jitter(rng, pick(rng, HAIR_RGB), 8)
        self.shirt = to_bgr(rng.integers(0, 256, 3) * rng.uniform(0.3, 1.0))
        self.pants = to_bgr(rng.integers(0, 200, 3) * rng.uniform(0.2, 0.8))
        self.shoes = jitter(rng, (40, 36, 34), 15)
        self.bag = jitter(rng, (60, 50, 40), 30) if rng.random() < 0.25 else None

    def draw(self, ctx: Context, dz: float, t: float) -> None:
        sp = ctx.sprite(self.x, self.y0, self.s_lo + dz, self.h)
        if sp is None:
            return
        ctx.cv.begin("person", PERSON)
        _person_shapes(sp, self, self.phase0 + self.freq * t)


class TwoWheeler(Item):
    """Bicycle or motorcycle seen at an angle (`squash` = |sin| of it), optionally ridden."""

    def __init__(self, rng: np.random.Generator, x: float, y0: float, s: float, motor: bool,
                 rider: bool, squash: float) -> None:
        self.x, self.y0, self.s_lo, self.s_hi = x, y0, s, s
        self.motor, self.sq = motor, squash
        self.dir = 1.0 if rng.random() < 0.5 else -1.0
        self.frame = to_bgr(rng.integers(0, 256, 3) * rng.uniform(0.3, 1.0))
        self.tyre = jitter(rng, (30, 30, 32), 6)
        self.metal = jitter(rng, (150, 150, 155), 10)
        # Ridden ones move along the road, away from the camera: we see the rider's back.
        self.rider = Person(rng, x, y0, s, False, False, facing_away=True) if rider else None

    def draw(self, ctx: Context, dz: float, t: float) -> None:
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
