"""The int8 .pt2 (PT2E quantisation, calibrated) and the .onnx export of the deployable module.

int8: the demo model, calibrated on generated street scenes, compiled for one small frame size
once per session; its labels against float32 (agreement and mIoU on held-out scenes), its
compiled code (int8 convolutions really run), and the C++ runtime and CLI against the Python
package, exactly. ONNX: the demo model for any frame size, gated through ONNX Runtime against
the eager module, metadata inside, scored by evaluate.py.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import ROOT
from cpp_helpers import CLI, run_cli

DEMO = ROOT / "models" / "emanet_demo.pth"
FRAME = (128, 256)  # the int8 package's frame size: small, so it compiles and runs fast


def scenes(seed: int, count: int, size: tuple[int, int] = FRAME) -> list[tuple[np.ndarray, np.ndarray]]:
    from streetgen import generate_scene

    rng = np.random.default_rng(seed)
    return [generate_scene(rng, *size) for _ in range(count)]


def demo_checkpoint() -> Path:
    if not DEMO.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{DEMO} is missing (it is committed to the repository)")
        pytest.skip(f"{DEMO} is missing")
    return DEMO


@pytest.fixture(scope="session")
def int8_package(tmp_path_factory) -> dict:
    from emaseg.export import export_model

    checkpoint = demo_checkpoint()
    root = tmp_path_factory.mktemp("int8")
    calibration = root / "calibration"
    calibration.mkdir()
    for i, (image, _) in enumerate(scenes(100, 20)):
        assert cv2.imwrite(str(calibration / f"scene{i:02d}.png"), image)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        report = export_model(checkpoint, root / "int8.pt2", dtype="int8", calibration=calibration,
                              frame_size=FRAME)
        export_model(checkpoint, root / "float.pt", frames=[torch.zeros(1, 64, 64, 3, dtype=torch.uint8)])
    finally:
        torch.set_num_threads(previous)
    return {"pt2": root / "int8.pt2", "pt": root / "float.pt", "report": report, "calibration": calibration}


def test_int8_gate_and_metadata(int8_package):
    from emaseg.export import read_metadata

    report = int8_package["report"]
    assert len(report.parity) == 4  # every fifth of the 20 calibration images is held out
    assert min(r["agreement"] for r in report.parity) >= 0.95
    from emaseg.export.network import network_size

    meta = read_metadata(int8_package["pt2"])
    h, w = network_size(meta["resize"], *FRAME)  # the network compiled for FRAME's network size only
    assert meta["dtype"] == "int8" and not meta["any_size"] and meta["network_models"] == {f"{h}x{w}": f"net_{h}x{w}"}
    assert meta["calibration"] == {"frames": 16, "held_out": 4, "folder": "calibration"}


def test_int8_package_runs_int8_convolutions(int8_package):
    """Freezing folds quantise/dequantise into oneDNN int8 convolutions; without it they would
    silently run in float32 (a known torchao pitfall)."""
    with zipfile.ZipFile(int8_package["pt2"]) as archive:
        code = "".join(archive.read(n).decode(errors="replace") for n in archive.namelist()
                       if "/data/aotinductor/net_" in n and n.endswith(".wrapper.cpp"))
    assert code.count("qconv") >= 10, "the compiled model calls no (or few) int8 convolutions"
    assert "mkldnn__convolution_pointwise(" not in code  # no float32 convolution is left


def test_int8_agrees_with_float32_on_held_out_scenes(int8_package):
    """On scenes neither calibration nor the gate saw: labels >= 97% equal to float32's (target
    98%) and the mIoU within 1.0 of float32's."""
    from emaseg.export import load_exported
    from emaseg.metrics import ConfusionMatrix

    package, meta = load_exported(int8_package["pt2"])
    scripted = torch.jit.load(str(int8_package["pt"]))
    ours, reference = ConfusionMatrix(meta["num_classes"]), ConfusionMatrix(meta["num_classes"])
    equal = []
    with torch.inference_mode():
        for image, labels in scenes(200, 8):
            batch = torch.from_numpy(image)[None]
            a, b = package(batch)[0], scripted(batch)[0]
            equal.append(float((a == b).double().mean()))
            target = torch.from_numpy(labels.astype(np.int64))
            ours.update(target, a.long())
            reference.update(target, b.long())
    assert np.mean(equal) >= 0.97, equal
    miou, miou_float = ours.compute()["mIoU"], reference.compute()["mIoU"]
    assert abs(miou - miou_float) <= 1.0, (miou, miou_float)


def test_int8_runtime_and_cli_equal_python(int8_package, tmp_path):
    """Nothing int8-specific in the runtime: Segmenter and ema_seg give the Python package's labels."""
    from conftest import import_runtime

    runtime = import_runtime()
    from emaseg.export import load_exported

    package, _ = load_exported(int8_package["pt2"])
    image = scenes(300, 1)[0][0]
    with torch.inference_mode():
        expected = package(torch.from_numpy(image)[None])[0].numpy()
    np.testing.assert_array_equal(runtime.Segmenter(int8_package["pt2"], threads=1).segment(image), expected)
    if CLI.is_file():
        assert cv2.imwrite(str(tmp_path / "scene.png"), image)
        result = run_cli("--model", int8_package["pt2"], "--image", tmp_path / "scene.png", "--mask-dir",
                         tmp_path / "masks", "--threads", "1", "--quiet", cwd=tmp_path)  # overlay: cwd
        assert result.returncode == 0, result.stderr
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / "masks" / "scene.png"), cv2.IMREAD_UNCHANGED),
                                      expected)


def test_int8_usage_errors(int8_package, tmp_path):
    export = [sys.executable, str(ROOT / "python" / "export.py"), "--checkpoint", str(demo_checkpoint())]
    few = tmp_path / "few"
    few.mkdir()
    for i, (image, _) in enumerate(scenes(5, 2)):
        cv2.imwrite(str(few / f"{i}.png"), image)
    cases = {
        "needs --calibration DIR": ["--output", str(tmp_path / "a.pt2"), "--dtype", "int8"],
        "writes a .pt2 package": ["--output", str(tmp_path / "a.pt"), "--dtype", "int8",
                                  "--calibration", str(int8_package["calibration"])],
        "2 image(s) found, at least 5 needed": ["--output", str(tmp_path / "a.pt2"), "--dtype", "int8",
                                                "--calibration", str(few)],
        "--calibration is for --dtype int8": ["--output", str(tmp_path / "a.pt"), "--calibration", str(few)],
    }
    for message, flags in cases.items():
        result = subprocess.run([*export, *flags], capture_output=True, text=True)
        assert result.returncode == 1 and message in result.stderr, (message, result.stderr)
        assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["few"]  # nothing written


# ---------------------------------------------------------------------------------------------
# python/export.py --output M.onnx


class _Chatter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="session")
def onnx_file(tmp_path_factory) -> dict:
    pytest.importorskip("onnxruntime")
    from emaseg.export import export_model

    checkpoint = demo_checkpoint()
    root = tmp_path_factory.mktemp("onnx")
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    chatter = _Chatter()  # torch.onnx's own notes (no torchvision, a pytree deprecation) stay quiet
    logging.getLogger("torch.onnx").addHandler(chatter)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = export_model(checkpoint, root / "net.onnx")  # the config's resize, any frame size
        assert not [str(w.message) for w in caught if "treespec" in str(w.message)]
        assert not [r for r in chatter.records if "torchvision" in r.getMessage()]
        export_model(checkpoint, root / "net.pt", frames=[torch.zeros(1, 64, 64, 3, dtype=torch.uint8)])
    finally:
        logging.getLogger("torch.onnx").removeHandler(chatter)
        torch.set_num_threads(previous)
    return {"checkpoint": checkpoint, "onnx": root / "net.onnx", "pt": root / "net.pt", "report": report}


def test_onnx_labels_equal_torchscript(onnx_file):
    """Any batch and frame size. ONNX Runtime's labels are the TorchScript file's on the gate's
    frames (odd sizes, a batch of 2, portrait) and on street scenes, but for near-ties (ORT runs
    its own kernels: a pixel whose two best probabilities lie within gates.ONNX_TOLERANCE may flip)."""
    from emaseg import onnx
    from emaseg.export import load_exported, read_metadata
    from emaseg.export.gates import ONNX_TOLERANCE

    rows = onnx_file["report"].parity
    # 6 of the gate frames' 70,000 pixels with the demo model (gates.ONNX_TOLERANCE says why).
    assert all(r["labels_differ"] == r["near_ties"] for r in rows) and sum(r["labels_differ"] for r in rows) <= 8
    assert onnx.input_shape(onnx_file["onnx"])[3] == 3
    assert all(isinstance(d, str) for d in onnx.input_shape(onnx_file["onnx"])[:3])  # N, H, W symbolic
    meta = read_metadata(onnx_file["onnx"])
    assert meta["format"] == "emaseg.onnx" and meta["fixed_input"] == {}
    assert {k: v for k, v in meta.items() if k not in ("format", "fixed_input", "onnx")} == \
        {k: v for k, v in read_metadata(onnx_file["pt"]).items() if k != "format"}
    model, _ = load_exported(onnx_file["onnx"])
    scripted = torch.jit.load(str(onnx_file["pt"]))
    for n, h, w in ((1, 97, 131), (2, 131, 97), (1, 256, 512)):
        frames = torch.from_numpy(np.stack([image for image, _ in scenes(n + h, n, (h, w))]))
        with torch.inference_mode():
            ours, theirs = model(frames), scripted(frames)
            wrong = ours != theirs
            assert int(wrong.sum()) <= 2, f"{int(wrong.sum())} labels differ at {n}x{h}x{w}"
            if wrong.any():
                probs = scripted.probabilities(frames)
                p_ours = probs.gather(1, ours.long()[:, None])[:, 0][wrong]
                p_theirs = probs.gather(1, theirs.long()[:, None])[:, 0][wrong]
                assert float((p_ours - p_theirs).abs().max()) <= ONNX_TOLERANCE


def test_onnx_inspect_and_evaluate(onnx_file, tmp_path):
    inspect = subprocess.run([sys.executable, str(ROOT / "python" / "export.py"), "--inspect", str(onnx_file["onnx"])],
                             capture_output=True, text=True)
    assert inspect.returncode == 0 and json.loads(inspect.stdout)["format"] == "emaseg.onnx"
    data = tmp_path / "data"
    made = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_synthetic.py"), "--out", str(data),
                           "--train", "0", "--val", "3", "--size", "64x128", "--quiet"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    scores = {}
    for suffix in ("onnx", "pt"):
        result = subprocess.run([sys.executable, str(ROOT / "python" / "evaluate.py"), "--model", str(onnx_file[suffix]),
                                 "--data-root", str(data), "--json", str(tmp_path / f"{suffix}.json")],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        scores[suffix] = json.loads((tmp_path / f"{suffix}.json").read_text())["mIoU"]
    assert scores["onnx"] == scores["pt"]


def test_onnx_usage_errors(onnx_file, tmp_path):
    export = [sys.executable, str(ROOT / "python" / "export.py"), "--checkpoint", str(onnx_file["checkpoint"])]
    result = subprocess.run([*export, "--output", str(tmp_path / "m.onnx"), "--dtype", "bfloat16"],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "exported in float32" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_quiet_loggers_hide_only_the_chatter():
    """emaseg.quiet (used around torchao's import and torch.onnx's export): warnings of the named
    loggers are dropped inside the block, errors pass, and the levels come back after."""
    from emaseg.quiet import quiet_loggers

    chatter = _Chatter()
    logger = logging.getLogger("emaseg.test.chatty")
    logger.setLevel(logging.INFO)
    logger.addHandler(chatter)
    try:
        with quiet_loggers("emaseg.test.chatty"):
            logger.warning("no CUDA kernels")
            logger.error("a real failure")
        logger.warning("after the block")
    finally:
        logger.removeHandler(chatter)
    assert [r.getMessage() for r in chatter.records] == ["a real failure", "after the block"]
    assert logger.level == logging.INFO
