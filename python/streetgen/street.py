"""Street layout: the cross-section (lanes, kerbs, sidewalks), buildings, walls, hedges and
fences along it, and the generators that fill one chunk of street with static and moving items."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .camera import face_sub
from .colors import (
    BUILDING_RGB, Color, FENCE_RGB, ROAD_RGB, SIDEWALK_RGB, TERRAIN_RGB, VEG_RGB, WALL_RGB, WINDOW_RGB,
    jitter, pick, shade)
from .labels import BUILDING, FENCE, ROAD, SIDEWALK, TERRAIN, VEGETATION, WALL
from .props import Bush, Geo, Item, Lamp, LightPole, Mesh, Person, SignPole, Tree, TwoWheeler
from .vehicles import add_box, vehicle


CHUNK = 40.0               # length (m) of one lazily generated piece of street
CHUNK_ORIGIN = -2.0        # chunk 0 starts just behind a still image's camera (z = 0): nothing
                           # further back can be seen, so no chunk behind it is ever generated
FAR_STREET = 140.0         # small objects beyond this are a few pixels tall: not generated


# ----------------------------------------------------------------------------------------------
# Roadside structures (layer 1): buildings, walls, fences, hedges

def _building(rng: np.random.Generator, side: int, xf: float, y0: float, z0: float, z1: float,
              height: float, view: tuple[float, float], f_px: float) -> Mesh:
    """A block whose facade is the plane x = xf, facing the road; near end face at z0."""
    depth = rng.uniform(8, 20)
    xb = xf + side * depth
    col = jitter(rng, pick(rng, BUILDING_RGB), 10)
    facade = np.array([(xf, y0, z0), (xf, y0, z1), (xf, height, z1), (xf, height, z0)])
    end = np.array([(xf, y0, z0), (xb, y0, z0), (xb, height, z0), (xf, height, z0)])
    geo: Geo = [(end[None], shade(col, 0.8), np.inf), (facade[None], col, np.inf)]
    if rng.random() < 0.6:  # cornice band
        geo.append((face_sub(facade, 0, 1, 1 - 0.5 / height, 1), jitter(rng, shade(col, 0.75), 6), 250.0))
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
        quads = face_sub(facade, hz, hz + ww / length, vy, vy + wh / (height - y0))
        colors = [jitter(rng, pick(rng, WINDOW_RGB), 6) for _ in range(2)]
        lit = jitter(rng, (230, 210, 150), 10)
        which = np.searchsorted((0.55, 0.95), rng.random(len(hz)))
        for k, c in enumerate(colors + [lit]):
            if (which == k).any():
                geo.append((quads[which == k], c, win_dist))
    # Ground floor: shop windows or a door.
    if rng.random() < 0.6 and length > 4:
        n = max(1, int(length // 5))
        h0 = (np.arange(n) + 0.12) / n
        geo.append((face_sub(facade, h0, h0 + 0.76 / n, (0.3) / height, (ground_h - 0.5) / height),
                    jitter(rng, pick(rng, WINDOW_RGB), 8), 120.0))
    else:
        h = rng.uniform(0.2, 0.8)
        geo.append((face_sub(facade, h, h + 1.4 / length, 0, 2.3 / height), jitter(rng, (80, 60, 45), 20), 80.0))
    mesh = Mesh(1, xf, z0, z1, [("building", BUILDING, geo)])
    mesh.casts = (xf, z0, z1, height)  # type: ignore[attr-defined]  # for sunlit shadows
    return mesh


def _wall(rng: np.random.Generator, side: int, x: float, y0: float, z0: float, z1: float,
          view: tuple[float, float]) -> Mesh:
    h = rng.uniform(0.8, 2.6)
    col = jitter(rng, pick(rng, WALL_RGB), 10)
    thick = rng.uniform(0.2, 0.4)
    x0, x1 = (x, x + thick) if side > 0 else (x - thick, x)
    geo: Geo = []
    f = add_box(geo, (x0, x1, y0, y0 + h, z0, z1), view, col)
    if "side" in f and rng.random() < 0.5:  # coping stones along the top
        geo.append((face_sub(f["side"], 0, 1, 0.9, 1.0), shade(col, 0.9), 150.0))
    return Mesh(1, x, z0, z1, [("wall", WALL, geo)])


def _hedge(rng: np.random.Generator, side: int, x: float, y0: float, z0: float, z1: float,
           view: tuple[float, float]) -> Mesh:
    h = rng.uniform(0.8, 2.0)
    t = rng.uniform(0.6, 1.2)
    x0, x1 = (x, x + t) if side > 0 else (x - t, x)
    geo: Geo = []
    add_box(geo, (x0, x1, y0, y0 + h, z0, z1), view, jitter(rng, pick(rng, VEG_RGB), 8))
    return Mesh(1, x, z0, z1, [("hedge", VEGETATION, geo)])


def _fence(rng: np.random.Generator, side: int, x: float, y0: float, z0: float, z1: float) -> Mesh:
    """Posts + rails, plus pickets or a solid panel. Gaps show what is behind (labelled as such)."""
    h = rng.uniform(0.9, 2.0)
    col = jitter(rng, pick(rng, FENCE_RGB), 10)
    style = pick(rng, ("picket", "picket", "rails", "panel"))
    face = np.array([(x, y0, z0), (x, y0, z1), (x, y0 + h, z1), (x, y0 + h, z0)])
    L = z1 - z0
    geo: Geo = []
    if style == "panel":
        geo.append((face[None], col, np.inf))
        return Mesh(1, x, z0, z1, [("fence", FENCE, geo)])
    pitch = rng.uniform(0.12, 0.22) if style == "picket" else rng.uniform(1.8, 2.6)
    width = rng.uniform(0.35, 0.6) * pitch if style == "picket" else 0.1
    h0 = np.arange(0.0, L - width, pitch) / L
    posts = face_sub(face, h0, h0 + width / L, 0, 1)
    rails = face_sub(face, 0, 1, [0.2, 0.75], [0.28, 0.83])
    # Rails and pickets overlap, so they go in separate calls (cv2 XORs overlaps in one call).
    geo.append((rails, shade(col, 0.85), np.inf))
    geo.append((posts, col, np.inf))
    return Mesh(1, x, z0, z1, [("fence", FENCE, geo)])


class _GroundQuads(Mesh):
    """Flat patches on the ground (grass, pavement, crossings, repairs): layer 0."""

    def __init__(self, cls: int, quads: np.ndarray, color: Color, kind: str) -> None:
        super().__init__(0, 0.0, float(quads[..., 2].min()), float(quads[..., 2].max()),
                         [(kind, cls, [(quads, color, np.inf)])])


def ground_rect(x0, x1, y: float, z0, z1) -> np.ndarray:
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


def make_street(rng: np.random.Generator) -> _Street:
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
        tram_lane = int(pick(rng, others)) if others else None
    road = jitter(rng, pick(rng, ROAD_RGB), 6)
    side_rgb = pick(rng, SIDEWALK_RGB)
    side = jitter(rng, side_rgb, 8)
    zone = rng.dirichlet((3.0, 1.5, 0.8))
    sun = None
    if rng.random() < 0.5:
        sun = (rng.uniform(0.3, 1.4), rng.uniform(-0.8, 0.8), 1 if rng.random() < 0.5 else -1)
    return _Street(lane_w, lanes_r, lanes_l, park_r, park_l, bike_r, rng.uniform(0.1, 0.18),
                   rng.uniform(1.8, 5.0), rng.uniform(1.8, 5.0), cam_lane, cam_x, rng.uniform(1.2, 1.7),
                   road, side, side if rng.random() < 0.7 else jitter(rng, pick(rng, SIDEWALK_RGB), 8),
                   jitter(rng, [0.85 * c for c in side_rgb], 6),  # kerb: a darker sidewalk colour
                   jitter(rng, (225, 225, 220), 8),
                   jitter(rng, (230, 190, 60), 10) if rng.random() < 0.3 else jitter(rng, (225, 225, 220), 8),
                   zone, rng.uniform(0.2, 1.0), rng.uniform(0.15, 1.0), rng.uniform(0.3, 0.95),
                   tram_lane, sun)


def gen_static(rng: np.random.Generator, st: _Street, z0: float, z1: float, video: bool,
                f_px: float) -> list[Item]:
    """Everything that does not move in one chunk: ground patches, roadside, street furniture."""
    items: list[Item] = []
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
        items.append(_GroundQuads(ROAD, ground_rect(x, x + rng.uniform(0.8, 3), 0.0, z, z + rng.uniform(1, 4)),
                                  jitter(rng, shade(st.road, rng.uniform(0.8, 1.15)), 4), "road patch"))
    if rng.random() < 0.2:  # zebra crossing
        zc = rng.uniform(z0 + 2, z1 - 6)
        w = rng.uniform(3.0, 4.5)
        xs = np.arange(-st.L + 0.3, st.R - 0.5, 1.0)
        items.append(_GroundQuads(ROAD, ground_rect(xs, xs + 0.5, 0.0, zc, zc + w), st.paint, "zebra crossing"))
        if not video:  # people crossing (a moving camera would drive through them)
            for _ in range(int(rng.poisson(2.0 * st.peds))):
                items.append(Person(rng, rng.uniform(-st.L, st.R), 0.0, rng.uniform(zc + 0.5, zc + w - 0.5),
                                     True, True))
    if not video:
        for _ in range(int(rng.poisson(0.4 * st.peds))):  # jaywalkers
            items.append(Person(rng, rng.uniform(-st.L, st.R), 0.0, rng.uniform(z0, z1), True, True))
    return items


def _gen_side(rng: np.random.Generator, st: _Street, side: int, z0: float, z1: float,
              view: tuple[float, float], f_px: float, furnish: bool) -> list[Item]:
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
    items: list[Item] = []
    # Ground beyond the sidewalk: grass, or pavement in the city.
    beyond = TERRAIN if zone or grass or rng.random() < 0.4 else SIDEWALK
    col = jitter(rng, pick(rng, TERRAIN_RGB), 8) if beyond == TERRAIN else jitter(rng, pick(rng, SIDEWALK_RGB), 8)
    a, b = sorted((X(outer), X(outer + 60)))
    items.append(_GroundQuads(beyond, ground_rect(a, b, y, z0, z1), col, "ground"))
    items.extend(_gen_frontage(rng, st, side, zone, front, y, z0, z1, view, f_px))
    if furnish:
        items.extend(_gen_furniture(rng, st, side, zone, edge, sw, y, z0, z1))
    return items


def _gen_frontage(rng: np.random.Generator, st: _Street, side: int, zone: int, front: float, y: float,
                  z0: float, z1: float, view: tuple[float, float], f_px: float) -> list[Item]:
    """What lines the street beyond the sidewalk, by zone: 0 city, 1 suburb, 2 park."""
    X = lambda d: side * d  # noqa: E731
    items: list[Item] = []
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
                items.append(Tree(rng, 1, X(front + rng.uniform(1, setback)), y, rng.uniform(z, z + w)))
        else:              # park: grass, trees, bushes, an occasional low fence, distant blocks
            w = min(rng.uniform(10, 25), z1 - z)
            if rng.random() < 0.3:
                items.append(_fence(rng, side, X(front), y, z, z + w))
            for _ in range(int(rng.integers(1, 5))):
                items.append(Tree(rng, 1, X(front + rng.uniform(0.5, 25)), y, rng.uniform(z, z + w),
                                   rng.uniform(0.9, 1.5)))
            for _ in range(int(rng.integers(0, 4))):
                items.append(Bush(rng, 1, X(front + rng.uniform(0.3, 6)), y, rng.uniform(z, z + w)))
            if rng.random() < 0.4:
                items.append(_building(rng, side, X(front + rng.uniform(25, 45)), y, z, z + w,
                                       rng.uniform(10, 30), view, f_px))
        z += w
    return items


def _gap_filler(rng: np.random.Generator, side: int, x: float, y: float, z0: float, z1: float,
                view: tuple[float, float], f_px: float, back: float) -> list[Item]:
    """A gap between city blocks: maybe a wall or fence, a tree, a building further back."""
    r = rng.random()
    out: list[Item] = []
    if r < 0.35:
        out.append(_wall(rng, side, x, y, z0, z1, view))
    elif r < 0.65:
        out.append(_fence(rng, side, x, y, z0, z1))
    if rng.random() < 0.6:
        out.append(Tree(rng, 1, back, y, (z0 + z1) / 2, rng.uniform(1.0, 1.4)))
    if rng.random() < 0.5:
        out.append(_building(rng, side, back + side * rng.uniform(5, 15), y, z0, z1,
                             rng.uniform(10, 30), view, f_px))
    return out


def _gen_furniture(rng: np.random.Generator, st: _Street, side: int, zone: int, edge: float, sw: float,
                   y: float, z0: float, z1: float) -> list[Item]:
    """Lamps, signs, lights, street trees, bikes and standing people on one sidewalk."""
    X = lambda d: side * d  # noqa: E731
    items: list[Item] = []
    L = z1 - z0
    spacing = rng.uniform(18, 35)
    for z in np.arange(z0 + rng.uniform(0, spacing), z1, spacing):
        items.append(Lamp(rng, X(edge + 0.4), y, z, -side))
    for _ in range(int(rng.poisson(1.0 * L / 40))):
        items.append(SignPole(rng, X(edge + rng.uniform(0.3, 0.7)), y, rng.uniform(z0, z1)))
    if rng.random() < 0.35:
        items.append(LightPole(rng, X(edge + 0.5), y, rng.uniform(z0, z1), -side))
    if sw > 2.6 and rng.random() < (0.55 if zone == 0 else 0.3):
        step = rng.uniform(7, 13)
        for z in np.arange(z0 + rng.uniform(0, step), z1, step):
            items.append(Tree(rng, 2, X(edge + rng.uniform(0.8, 1.3)), y, z, rng.uniform(0.8, 1.1)))
    for _ in range(int(rng.poisson(0.5))):
        items.append(Bush(rng, 2, X(edge + sw - rng.uniform(0.3, 0.8)), y, rng.uniform(z0, z1)))
    for _ in range(int(rng.poisson(1.0))):  # parked bicycles, mostly along the building side
        xb = edge + sw - 0.5 if rng.random() < 0.6 else edge + 0.5
        items.append(TwoWheeler(rng, X(xb), y, rng.uniform(z0, z1), False, False, rng.uniform(0.4, 1.0)))
    if rng.random() < 0.2:
        items.append(TwoWheeler(rng, X(edge + 0.8), y, rng.uniform(z0, z1), True, False, rng.uniform(0.3, 1.0)))
    for _ in range(int(rng.poisson(1.2 * st.peds))):  # people standing around
        items.append(Person(rng, X(edge + rng.uniform(0.4, max(0.5, sw - 0.4))), y, rng.uniform(z0, z1),
                             rng.random() < 0.5, False))
    return items


def gen_lane(rng: np.random.Generator, st: _Street, lane: int, z0: float, z1: float) -> list[Item]:
    """Moving vehicles in one lane and chunk (positions in the lane's moving frame)."""
    xc = st.lane_x(lane)
    facing = 1 if lane >= 0 else -1
    view = (st.cam_x, st.cam_h)
    items: list[Item] = []
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
                items.append(TwoWheeler(rng, xc + rng.uniform(-0.5, 0.5), 0.0, s, True, True,
                                         rng.uniform(0.05, 0.2)))
        else:
            mesh, length = vehicle(rng, kind, xc + rng.uniform(-0.25, 0.25), s, facing, view, st.road)
            if s + length > z1:
                break
            # Keep the camera's own car out of other cars: nothing right ahead or around it.
            if not (lane == st.cam_lane and -length - 3 < s < 8):
                items.append(mesh)
        s += length + (rng.uniform(40, 120) if tram else rng.uniform(4, 12) + rng.exponential(40 * (1.1 - st.traffic)))
    return items


def gen_parked(rng: np.random.Generator, st: _Street, z0: float, z1: float) -> list[Item]:
    view = (st.cam_x, st.cam_h)
    items: list[Item] = []
    for side, width in ((1, st.park_r), (-1, st.park_l)):
        if width <= 0:
            continue
        xc = side * ((st.R if side > 0 else st.L) - width / 2)
        s = z0 + rng.uniform(0, 6)
        while True:
            kind = str(rng.choice(["car", "van", "truck"], p=[0.86, 0.1, 0.04]))
            facing = side if rng.random() < 0.8 else -side
            mesh, length = vehicle(rng, kind, xc + rng.uniform(-0.15, 0.15), s, facing, view, st.road)
            if s + length > z1:
                break
            if rng.random() < st.parked:
                items.append(mesh)
            s += length + rng.uniform(0.5, 2.5)
    return items


def gen_walkers(rng: np.random.Generator, st: _Street, side: int, away: bool, z0: float, z1: float
                 ) -> list[Item]:
    edge = st.R if side > 0 else st.L
    sw = st.sw_r if side > 0 else st.sw_l
    n = int(rng.poisson(1.6 * st.peds * (z1 - z0) / CHUNK))
    return [Person(rng, side * (edge + rng.uniform(0.4, max(0.5, sw - 0.4))), st.curb_h, rng.uniform(z0, z1),
                    False, True, facing_away=away) for _ in range(n)]


def gen_riders(rng: np.random.Generator, st: _Street, z0: float, z1: float) -> list[Item]:
    xc = st.lanes_r * st.lane_w + st.bike_r / 2
    n = int(rng.poisson(1.2 * (z1 - z0) / CHUNK))
    return [TwoWheeler(rng, xc + rng.uniform(-0.2, 0.2), 0.0, rng.uniform(z0, z1), rng.random() < 0.15, True,
                        rng.uniform(0.05, 0.25)) for _ in range(n)]
