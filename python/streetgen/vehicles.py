"""Vehicle meshes (cars, vans, trucks, buses, trams): boxes, wheels and lights as labelled
polygons, with a cheap and a detailed version that agree on shape and colours."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .camera import box_faces, face_sub
from .colors import BUS_RGB, CAR_RGB, Color, jitter, pick, shade
from .labels import BUS, CAR, ROAD, TRAIN, TRUCK
from .props import Geo, Mesh


# ----------------------------------------------------------------------------------------------
# Vehicles: boxes with windows, lights and wheels, precomputed as world polygons

_UNIT_CIRCLE = {k: np.stack((np.zeros(k), np.cos(np.arange(k) * 2 * math.pi / k),
                             np.sin(np.arange(k) * 2 * math.pi / k)), axis=1) for k in (8, 12)}


def _wheel_disc(x: float, r: float, zc: float, k: int = 12) -> np.ndarray:
    """A wheel on a side face: a k-gon in the plane x = const, centred at height r."""
    return (_UNIT_CIRCLE[k] * r + (x, r, zc))[None]


def vehicle(rng: np.random.Generator, kind: str, xc: float, s: float, facing: int,
             view: tuple[float, float], road: Color) -> tuple[Mesh, float]:
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
        return [("vehicle shadow", ROAD, [(shadow, shade(road, 0.45), np.inf)]), (kind, cls, geo)]

    return Mesh(2, xc, s, s + length, build=build, lod_size=2.0), length


_FACE_SHADE = {"near": 0.92, "side": 0.75, "top": 1.1}


def add_box(geo: Geo, box: tuple[float, ...], view: tuple[float, float], color: Color) -> dict[str, np.ndarray]:
    """Append the visible faces of a box, shaded by orientation; returns them for details."""
    faces = box_faces(*box, view)
    for name, face in faces.items():
        geo.append((face[None], shade(color, _FACE_SHADE[name]), np.inf))
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
    return jitter(rng, (235, 40, 30), 10) if facing > 0 else jitter(rng, (245, 240, 215), 8)


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
    color = jitter(rng, pick(rng, CAR_RGB), 8)
    glass = jitter(rng, pick(rng, [(30, 36, 44), (52, 60, 70), (20, 22, 26)]), 6)
    tyre, hub = jitter(rng, (26, 26, 28), 4), jitter(rng, (140, 140, 146), 12)
    light, plate = _light_color(rng, facing), jitter(rng, (225, 225, 220), 8)
    r = rng.uniform(0.3, 0.36)
    x0, x1, z0, z1 = xc - W / 2, xc + W / 2, s, s + L
    axles = (z0 + 0.75, z1 - 0.85)
    geo: Geo = []
    if detail:
        _add_wheels(geo, x0, x1, axles, r, view, tyre)
    body = add_box(geo, (x0, x1, 0.28 if detail else 0.1, body_top, z0, z1), view, color)
    cz0, cz1 = (z0 + short, z1 - long_) if facing > 0 else (z0 + long_, z1 - short)
    cab = add_box(geo, (x0 + 0.1, x1 - 0.1, body_top, cab_top, cz0, cz1), view, color)
    geo.append((face_sub(cab["near"], 0.08, 0.92, 0.1, 0.88), glass, np.inf))
    if detail:
        if "side" in cab:
            geo.append((face_sub(cab["side"], [0.05, 0.53], [0.47, 0.95], 0.15 if not van else 0.45, 0.88),
                        glass, np.inf))
        near = body["near"]
        geo.append((face_sub(near, [0.04, 0.8], [0.2, 0.96], 0.55, 0.85), light, np.inf))
        geo.append((face_sub(near, 0.38, 0.62, 0.12, 0.38), plate, np.inf))
        _add_side_discs(geo, x0, x1, axles, r, view, tyre, hub)
    return (CAR, geo, W)


def _truck_geo(rng: np.random.Generator, kind: str, xc: float, s: float, L: float, facing: int,
              view: tuple[float, float], detail: bool) -> tuple[int, Geo, float]:
    """Box truck: cab and cargo box, the nearer one drawn last."""
    Lc = rng.uniform(2.0, 2.5)
    Lb = L - Lc - 0.2
    Wc, Wb = 2.3, rng.uniform(2.35, 2.55)
    top = rng.uniform(3.3, 3.9)
    cab_col = jitter(rng, pick(rng, CAR_RGB + [(240, 240, 240)] * 3), 8)
    box_col = jitter(rng, pick(rng, [(235, 235, 232), (180, 182, 186), (200, 60, 40), (40, 70, 140),
                                     (240, 200, 60)]), 8)
    tyre, hub = jitter(rng, (26, 26, 28), 4), jitter(rng, (140, 140, 146), 12)
    glass, light = jitter(rng, (40, 46, 52), 6), _light_color(rng, facing)
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
            f = add_box(geo, (xc - Wc / 2, xc + Wc / 2, 0.5 if detail else 0.2, 2.9, a, b), view, cab_col)
            if facing < 0:
                geo.append((face_sub(f["near"], 0.06, 0.94, 0.55, 0.9), glass, np.inf))
                if detail:
                    geo.append((face_sub(f["near"], [0.04, 0.8], [0.2, 0.96], 0.12, 0.22), light, np.inf))
            if "side" in f and detail:
                geo.append((face_sub(f["side"], 0.15, 0.8, 0.55, 0.88), glass, np.inf))
        else:
            f = add_box(geo, (xc - Wb / 2, xc + Wb / 2, 0.9 if detail else 0.3, top, a, b), view, box_col)
            if facing > 0 and detail:
                geo.append((face_sub(f["near"], 0.495, 0.505, 0.03, 0.97), shade(box_col, 0.6), np.inf))
                geo.append((face_sub(f["near"], [0.04, 0.8], [0.2, 0.96], 0.03, 0.08), light, np.inf))
    if detail:
        _add_side_discs(geo, xc - Wb / 2, xc + Wb / 2, axles, 0.48, view, tyre, hub)
    return (TRUCK, geo, Wb)


def _bus_geo(rng: np.random.Generator, kind: str, xc: float, s: float, L: float, facing: int,
            view: tuple[float, float], detail: bool) -> tuple[int, Geo, float]:
    """Bus or tram: one long box with a band of side windows."""
    tram = kind == "tram"
    W = 2.4 if tram else 2.55
    y0, y1 = (0.35, 3.4) if tram else (0.3, 3.1)
    col = jitter(rng, pick(rng, BUS_RGB), 8)
    glass = jitter(rng, pick(rng, [(30, 36, 44), (52, 60, 70)]), 6)
    tyre, hub = jitter(rng, (26, 26, 28), 4), jitter(rng, (120, 120, 126), 12)
    sign = jitter(rng, (40, 30, 20), 8)
    front = facing < 0 or tram
    light = _light_color(rng, -1 if front else 1)
    geo: Geo = []
    axles = (s + 2.5, s + L - 2.5) if not tram else (s + 3.0, s + L / 2, s + L - 3.0)
    if detail:
        _add_wheels(geo, xc - W / 2, xc + W / 2, axles, 0.5, view, tyre)
    f = add_box(geo, (xc - W / 2, xc + W / 2, y0 if detail else 0.1, y1, s, s + L), view, col)
    if front:  # the front: big windscreen and a destination sign
        geo.append((face_sub(f["near"], 0.06, 0.94, 0.38, 0.86), glass, np.inf))
    else:
        geo.append((face_sub(f["near"], 0.1, 0.9, 0.6, 0.88), glass, np.inf))
    if "side" in f:
        n = int(L // 2.2)
        h0 = 0.04 + np.arange(n) * (0.92 / n)
        geo.append((face_sub(f["side"], h0, h0 + 0.92 / n - 0.01, 0.5, 0.88), glass, np.inf))
    if detail:
        if front:
            geo.append((face_sub(f["near"], 0.15, 0.85, 0.88, 0.96), sign, np.inf))
        geo.append((face_sub(f["near"], [0.04, 0.8], [0.2, 0.96], 0.1, 0.2), light, np.inf))
        if not tram:
            _add_side_discs(geo, xc - W / 2, xc + W / 2, axles, 0.5, view, tyre, hub)
    return (TRAIN if tram else BUS, geo, W)
