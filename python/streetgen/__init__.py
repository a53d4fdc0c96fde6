"""Procedural street scenes with pixel-exact Cityscapes trainId labels.

No real dataset can be downloaded where this project is built, so it renders its own: a straight
street seen by a car-mounted pinhole camera, with lane markings, kerbs, sidewalks, buildings with
windows, walls, fences, hedges, trees, grass, poles, traffic signs and lights, parked and moving
vehicles (cars, vans, trucks, buses, trams), pedestrians, cyclists and motorcyclists.

How labels stay exact: everything is drawn by `canvas.Canvas`, which fills the SAME polygon / ellipse /
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

Modules, each with one job (in drawing order): `labels` and `colors` (what is drawn, in which
colours), `canvas` (drawing image and labels together), `camera` (projection), `props`, `vehicles`
and `street` (what a street holds), `photometrics` (image-only effects), `scene` (the world and
the entry points) and `writer` (dataset and video files). Used by `scripts/make_synthetic.py`.
"""
from .labels import (BICYCLE, BUILDING, BUS, CAR, FENCE, HOOD_MAX_FRAC, IGNORE, MOTORCYCLE, NUM_CLASSES, PERSON,
                     POLE, RIDER, ROAD, SIDEWALK, SKY, TERRAIN, TRAFFIC_LIGHT, TRAFFIC_SIGN, TRAIN, TRUCK,
                     VEGETATION, WALL, colorize)
from .scene import (MAX_SIZE, MIN_SIZE, SceneDebug, SceneSequence, generate_scene, generate_video_frames,
                    render_scene, scene_rng)
from .writer import atomic_write_png, image_paths, video_label_dir, write_dataset, write_video

__all__ = ["BICYCLE", "BUILDING", "BUS", "CAR", "FENCE", "HOOD_MAX_FRAC", "IGNORE", "MAX_SIZE", "MIN_SIZE",
           "MOTORCYCLE", "NUM_CLASSES", "PERSON", "POLE", "RIDER", "ROAD", "SIDEWALK", "SKY", "SceneDebug",
           "SceneSequence", "TERRAIN", "TRAFFIC_LIGHT", "TRAFFIC_SIGN", "TRAIN", "TRUCK", "VEGETATION", "WALL",
           "atomic_write_png", "colorize", "generate_scene", "generate_video_frames", "image_paths",
           "render_scene", "scene_rng", "video_label_dir", "write_dataset", "write_video"]
