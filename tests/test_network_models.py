"""The default .pt2 (format version 2): the network compiled per network input size, frozen by
TorchScript for any other size, the frame work around it. Every consumer computes the same labels:
the C++ runtime equals the Python package model exactly (the frame work is bit for bit the same
arithmetic), and both equal the eager module but at near-ties, at every aspect ratio and odd size.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import ROOT, import_runtime, missing
from cpp_helpers import CLI, run_cli

runtime = import_runtime()

DEMO_PT2 = ROOT / "models" / "emanet_demo.pt2"
# (H, W): each compiled aspect ratio (16:9, 4:3, 2:1, 9:16) at a small size, an odd size of each,
# and sizes set-up compiles no network for (square, 3:2, an odd ratio, a tiny frame).
FRAMES = [(90, 160), (91, 161), (60, 80), (61, 79), (64, 128), (160, 90), (161, 89),
          (96, 96), (80, 120), (77, 103), (17, 33)]


@pytest.fixture(scope="module")
def demo():
    if not DEMO_PT2.is_file():
        missing(f"{DEMO_PT2} does not exist: bash scripts/setup.sh compiles it")
    from emaseg.export import load_exported
    from emaseg.export.exporter import build_module

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    package, meta = load_exported(DEMO_PT2)
    module, _ = build_module(ROOT / "models" / "emanet_demo.pth", mode=None, resize=None, flip=False,
                             dtype="float32", device="cpu")
    yield {"package": package, "meta": meta, "module": module,
           "segmenter": runtime.Segmenter(DEMO_PT2, threads=1)}
    torch.set_num_threads(previous)


def street_frame(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth colour field with noise: regions of several classes and their borders."""
    import cv2

    coarse = rng.uniform(0, 255, (max(h // 12, 2), max(w // 12, 2), 3)).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR) + rng.normal(0, 10, (h, w, 3))
    return np.clip(field, 0, 255).astype(np.uint8)


def test_setup_compiles_the_common_aspect_ratios(demo):
    meta, segmenter = demo["meta"], demo["segmenter"]
    assert meta["format_version"] == 2 and meta["any_size"]
    assert set(meta["network_models"]) == {"256x455", "256x341", "256x512", "455x256"}
    for (w, h), compiled in (((1280, 720), True), ((1920, 1080), True), ((3840, 2160), True), ((640, 480), True),
                             ((1440, 1080), True), ((512, 256), True), ((1080, 1920), True), ((1000, 700), False)):
        assert segmenter.metadata.compiled_for(w, h) == compiled, (w, h)


def test_network_size_is_the_same_arithmetic_in_cpp_and_python(demo):
    """The runtime picks the model by the network size it computes: it must be the module's."""
    from emaseg.export.network import network_size

    rng = np.random.default_rng(0)
    sizes = [(int(h), int(w)) for h, w in rng.integers(8, 5000, (400, 2))] + [(298, 596), (720, 1280), (1080, 1920)]
    meta = demo["segmenter"].metadata
    for h, w in sizes:
        ours = network_size(demo["meta"]["resize"], h, w)
        assert ours == demo["module"].network_size(h, w), (h, w)
        assert meta.network_size(w, h) == (ours[1], ours[0]), (h, w)


def test_every_consumer_gives_the_same_labels(demo):
    """C++ == the Python package model exactly; both == the eager module but at near-ties."""
    from emaseg.frame_labels import near_tie_count

    rng = np.random.default_rng(1)
    for h, w in FRAMES:
        frame = street_frame(rng, h, w)
        batch = torch.from_numpy(frame)[None]
        with torch.inference_mode():
            python = demo["package"](batch)[0].numpy()
            eager_scores = demo["module"].probabilities(batch)
        np.testing.assert_array_equal(demo["segmenter"].segment(frame), python, err_msg=f"{h}x{w}")
        differ, ties = near_tie_count(eager_scores, torch.from_numpy(python)[None], 1e-4)
        assert differ == ties, f"{h}x{w}: {differ} labels differ from the eager module, {ties} near-ties"
        # The resize in, the network and the probabilities out: within float rounding of the module's.
        probs = np.stack(demo["segmenter"].probabilities(frame))
        np.testing.assert_allclose(probs, eager_scores[0].numpy(), atol=2e-5, err_msg=f"{h}x{w}")


def test_an_uncompiled_aspect_ratio_gets_one_note_with_the_command(demo, tmp_path):
    """The CLI's default model on frames whose network size set-up did not compile: they run (on
    the any-size network), and stderr says once how to compile theirs."""
    if not CLI.is_file():
        missing(f"{CLI} is not built")
    import cv2

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(2)
    for name, (h, w) in (("a.png", (77, 103)), ("b.png", (154, 206)), ("c.png", (90, 160))):
        assert cv2.imwrite(str(images / name), street_frame(rng, h, w))
    run = run_cli("--images", images, "--output", tmp_path / "out", "--threads", "1", "--json", cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["model"] == "models/emanet_demo.pt2"
    notes = [line for line in run.stderr.splitlines() if "any-size" in line]
    # 77x103 and 154x206 share one network size (256x342): one note; 90x160 (16:9) is compiled.
    assert len(notes) == 1, run.stderr
    assert ("note: 103x77 frames run the network at 256x342, which models/emanet_demo.pt2 has no compiled model "
            "for: they run on its slower any-size model. Compile it once with: python python/export.py "
            "--checkpoint models/emanet_demo.pth --add-to models/emanet_demo.pt2 --output models/emanet_demo.pt2 "
            "--network-sizes 256x342") in notes[0]
    quiet = run_cli("--images", images, "--output", tmp_path / "out2", "--threads", "1", "--quiet", cwd=ROOT)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
