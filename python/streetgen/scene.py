"""Rendering: the world (a street, its camera, sky, backdrop and lazily generated contents) and
the public entry points, a still scene or a drive down a street as a frame sequence."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from .camera import Camera, Context
from .canvas import Canvas, Part
from .colors import BUILDING_RGB, CAR_RGB, Color, TERRAIN_RGB, VEG_RGB, jitter, mix, pick, shade, to_bgr
from .labels import BUILDING, HOOD_MAX_FRAC, IGNORE, ROAD, SIDEWALK, SKY, TERRAIN, VEGETATION
from .photometrics import Photometric
from .props import Item
from .street import (
    CHUNK, CHUNK_ORIGIN, FAR_STREET, gen_lane, gen_parked, gen_riders, gen_static, gen_walkers,
    ground_rect, make_street)


MIN_SIZE, MAX_SIZE = 64, 4096
SPLIT_CODES = {"train": 0, "val": 1}
_VIDEO_WORLD, _VIDEO_FRAME, _VIDEO_TEXTURE = 2, 3, 4  # seed-stream codes, distinct from the splits


class Stream:
    """Content moving at one speed, generated lazily per chunk from (base seed, key, chunk)."""

    def __init__(self, base: int, key: int, speed: float,
                 gen: Callable[[np.random.Generator, float, float], list[Item]], far: float = FAR_STREET) -> None:
        self.base, self.key, self.speed, self.gen, self.far = base, key, speed, gen, far
        self.cache: dict[int, list[Item]] = {}

    def items(self, lo: float, hi: float, forget_behind: bool = False) -> Iterator[Item]:
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


class World:
    """A street, its camera, its lighting and lazily generated contents."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, video: bool,
                 cam_speed: float = 0.0) -> None:
        self.h, self.w, self.video = height, width, video
        self.st = st = make_street(rng)
        self.f = width * rng.uniform(0.6, 1.0)
        self.horizon = height * rng.uniform(0.36, 0.5)
        self.yaw = rng.uniform(-0.06, 0.06)
        self.roll = 0.0 if video else rng.uniform(-0.02, 0.02)
        self.far = rng.uniform(130, 230)       # distance of the skyline backdrop
        self.speed = cam_speed
        self.sky = self._sky(rng)
        self.terrain = jitter(rng, pick(rng, TERRAIN_RGB), 8)
        self.backdrop = self._backdrop(rng)
        self.hood = self._hood(rng)
        base = int(rng.integers(1 << 62))
        f = self.f
        self.streams = [Stream(base, 0, 0.0, lambda r, a, b: gen_static(r, st, a, b, video, f), self.far),
                        Stream(base, 1, 0.0, lambda r, a, b: gen_parked(r, st, a, b))]
        for lane in list(range(st.lanes_r)) + [-1 - j for j in range(st.lanes_l)]:
            if lane == st.cam_lane:
                v = cam_speed                 # our lane moves with us: no rear-ending
            elif lane >= 0:
                v = max(0.0, cam_speed + rng.uniform(-4, 4))
            else:
                v = -rng.uniform(8, 14)
            self.streams.append(Stream(base, 20 + lane, v, lambda r, a, b, ln=lane: gen_lane(r, st, ln, a, b)))
        for side in (1, -1):   # pedestrians walking away from / towards the camera on each sidewalk
            for k, v in enumerate((rng.uniform(0.9, 1.6), -rng.uniform(0.9, 1.6))):
                self.streams.append(Stream(base, 30 + 2 * (side > 0) + k, v if video else 0.0,
                                            lambda r, a, b, sd=side, aw=v > 0: gen_walkers(r, st, sd, aw, a, b)))
        if st.bike_r > 0:
            self.streams.append(Stream(base, 40, rng.uniform(3.5, 6.0) if video else 0.0,
                                        lambda r, a, b: gen_riders(r, st, a, b)))

    def _sky(self, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < 0.65:
            top, hor = jitter(rng, (62, 112, 188), 12), jitter(rng, (178, 202, 226), 10)
        else:
            g = rng.uniform(150, 215)
            top, hor = jitter(rng, (g - 20, g - 15, g - 5), 5), jitter(rng, (g + 15, g + 17, g + 20), 4)
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
                col = mix(jitter(rng, pick(rng, BUILDING_RGB), 10), haze, rng.uniform(0.35, 0.65))
                block = np.array([[(x, -1, 0), (x + w, -1, 0), (x + w, h, 0), (x, h, 0)]])
                out.append(("building", BUILDING, block, col))
            else:
                h = rng.uniform(5, 15)
                col = mix(jitter(rng, pick(rng, VEG_RGB), 8), haze, rng.uniform(0.25, 0.5))
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
        paint = jitter(rng, pick(rng, CAR_RGB), 6)
        return poly, band, paint, mix(paint, to_bgr((235, 235, 240)), rng.uniform(0.15, 0.4))

    # ---- rendering

    def camera(self, t: float, bob: float = 0.0) -> Camera:
        return Camera(self.w, self.h, self.f, self.horizon + bob, self.st.cam_h, self.st.cam_x,
                      self.speed * t, self.yaw, self.roll)

    def render(self, cv: Canvas, cam: Camera, t: float) -> None:
        ctx = Context(cv, cam)
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

    def _visible_items(self, cam: Camera, t: float) -> list[tuple[Item, float]]:
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

    def _draw_road(self, ctx: Context, cam: Camera, ground: list[tuple[Item, float]], t: float) -> None:
        st, cv = self.st, ctx.cv
        z0, z1 = cam.z - 2.0, cam.z + self.far
        R, L, y = st.R, st.L, st.curb_h
        cv.begin("road", ROAD)
        ctx.quads(ground_rect(-L, R, 0.0, z0, z1), st.road)
        cv.begin("sidewalk", SIDEWALK)
        ctx.quads(ground_rect(R, R + st.sw_r, y, z0, z1), st.side_r)
        ctx.quads(ground_rect(-L - st.sw_l, -L, y, z0, z1), st.side_l)
        for x in (R, -L):  # kerb faces, visible because the camera is between them
            ctx.quads(np.array([[(x, 0, z0), (x, 0, z1), (x, y, z1), (x, y, z0)]]), st.curb)
        for it, dz in ground:
            it.draw(ctx, dz, t)
        self._draw_markings(ctx, cam)

    def _draw_markings(self, ctx: Context, cam: Camera) -> None:
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
            ctx.quads(ground_rect(x - w / 2, x + w / 2, 0.0, a, b), col)
        if st.tram_lane is not None:
            xc = st.lane_x(st.tram_lane)
            for x in (xc - 0.75, xc + 0.75):
                ctx.quads(ground_rect(x - 0.04, x + 0.04, 0.0, z0, z1), shade(st.road, 0.6))

    def _cast_shadows(self, ctx: Context, side: list[tuple[Item, float]]) -> None:
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
# Public API

@dataclass
class SceneDebug:
    """What `render_scene(record=True)` adds: the image before photometric effects and every
    drawn part in painter's order (later parts cover earlier ones)."""
    clean: np.ndarray
    parts: list[Part]


def check_size(height: int, width: int) -> None:
    if not (MIN_SIZE <= height <= MAX_SIZE and MIN_SIZE <= width <= MAX_SIZE):
        raise ValueError(f"image size {height}x{width} outside [{MIN_SIZE}, {MAX_SIZE}] pixels")


def render_scene(rng: np.random.Generator, height: int, width: int, record: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, SceneDebug | None]:
    """One random street scene: (BGR uint8 image (H, W, 3), trainId labels (H, W), debug info
    if `record`)."""
    check_size(height, width)
    world = World(rng, height, width, video=False)
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
        check_size(height, width)
        self.seed, self.fps = seed, fps
        rng = np.random.default_rng([seed, _VIDEO_WORLD])
        speed = rng.uniform(6.0, 12.0)
        self.world = World(rng, height, width, video=True, cam_speed=speed)
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
