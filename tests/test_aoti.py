"""AOTInductor packages (.pt2): compiled once per session from the tiny contract model, then run
by Python, the C++ runtime (Segmenter, from a path and from bytes), the bindings and the CLI,
which must agree with the TorchScript file exactly. Packages built for another CPU or torch
are refused with one clear error, never run.
"""
from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import import_runtime
from cpp_helpers import CLI, load_make_test_model, python_labels, run_cli, synthetic_frames

runtime = import_runtime()

SIZES = ((37, 53), (96, 160), (8, 8))  # odd, ordinary, the smallest frame the contract allows


@pytest.fixture(scope="session")
def packages(tmp_path_factory) -> dict[str, Path]:
    """tiny.pt (TorchScript) and tiny.pt2 (the same module compiled, dynamic N, H, W)."""
    from emaseg.export import aoti

    make = load_make_test_model()
    root = tmp_path_factory.mktemp("aoti")
    previous = torch.get_num_threads()
    torch.set_num_threads(2)  # two compiles of a few seconds each; the runs below use 1 thread
    try:
        fixed = aoti.compile_package(make.TinyColourSegmenter().eval(), make.metadata(), root / "tiny.pt2",
                                     example=aoti.package_input())
    finally:
        torch.set_num_threads(previous)
    assert fixed == {}  # every input dimension stayed symbolic
    return {"pt": make.make_test_model(root / "tiny.pt"), "pt2": root / "tiny.pt2"}


def frames() -> list[np.ndarray]:
    return [synthetic_frames(3, h, w)[-1] for h, w in SIZES]


def rewrite_tags(source: Path, target: Path, **changes: str) -> Path:
    """A copy of a package whose recorded metadata says something else (what another machine's
    export would record), so the runtime's checks can be tested without that machine."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith(".wrapper_metadata.json"):
                tags = json.loads(data)
                tags.update(changes)
                data = json.dumps(tags).encode()
            zout.writestr(info, data)
    return target


def test_package_metadata_round_trips(packages):
    from emaseg.export import aoti, read_metadata

    meta = read_metadata(packages["pt2"])
    expected = load_make_test_model().metadata()
    assert meta == {**expected, "format": "emaseg.aoti", "fixed_input": {}, "frame_models": {}}
    tags = aoti.read_package_metadata(packages["pt2"])
    assert tags["emaseg_torch_version"] == torch.__version__
    assert set(tags["emaseg_cpu_flags"].split()) == set(aoti.cpu_flags())
    assert aoti.is_package(packages["pt2"]) and not aoti.is_package(packages["pt"])


def test_python_package_equals_torchscript(packages):
    from emaseg.export import load_exported

    compiled, meta = load_exported(packages["pt2"])
    assert meta["format"] == "emaseg.aoti"
    for frame in frames():
        batch = torch.from_numpy(np.stack([frame, frame[::-1].copy()]))  # a batch of two
        with torch.inference_mode():
            expected = torch.jit.load(str(packages["pt"]))(batch)
            np.testing.assert_array_equal(compiled(batch).numpy(), expected.numpy())


def test_segmenter_pt_and_pt2_identical(packages):
    pt = runtime.Segmenter(packages["pt"], threads=1)
    pt2 = runtime.Segmenter(packages["pt2"], threads=1)
    from_bytes = runtime.Segmenter.from_bytes(packages["pt2"].read_bytes(), threads=1)
    assert pt2.metadata.format == "emaseg.aoti" and pt.metadata.format == "emaseg.torchscript"
    assert pt2.metadata.class_names == pt.metadata.class_names
    labels_seen = set()
    for frame in frames():
        expected = pt.segment(frame)
        labels_seen |= set(np.unique(expected))
        np.testing.assert_array_equal(pt2.segment(frame), expected)
        np.testing.assert_array_equal(from_bytes.segment(frame), expected)
        # Inductor fuses the softmax differently: equal to float rounding, not bit for bit.
        np.testing.assert_allclose(pt2.probabilities(frame), pt.probabilities(frame), atol=1e-6)
        np.testing.assert_allclose(from_bytes.probabilities(frame), pt.probabilities(frame), atol=1e-6)
    batch = [f for f in frames() if f.shape[:2] == (96, 160)] * 3
    for a, b in zip(pt2.segment_batch(batch), pt.segment_batch(batch)):
        np.testing.assert_array_equal(a, b)
    assert labels_seen == {0, 1, 2, 3}  # every class: the comparison has teeth


def test_backend_is_chosen_by_content(packages, tmp_path):
    renamed = shutil.copy(packages["pt2"], tmp_path / "actually_a_package.pt")
    segmenter = runtime.Segmenter(renamed, threads=1)
    assert segmenter.metadata.format == "emaseg.aoti"
    frame = frames()[1]
    np.testing.assert_array_equal(segmenter.segment(frame), python_labels(packages["pt"], [frame])[0])


@pytest.mark.parametrize("change, message", [
    ({"emaseg_cpu_flags": "avx512f avx512_fake_isa"}, "compiled for a CPU with avx512_fake_isa, which this CPU lacks"),
    ({"emaseg_torch_version": "2.1.0+cpu"}, "was compiled with torch 2.1.0+cpu"),
    ({"AOTI_DEVICE_KEY": "cuda"}, "was compiled for cuda, not for cpu"),
])
def test_packages_for_another_machine_are_refused(packages, tmp_path, change, message):
    from emaseg.export import aoti

    foreign = rewrite_tags(packages["pt2"], tmp_path / "foreign.pt2", **change)
    with pytest.raises(runtime.Error, match=re.escape(message)) as caught:
        runtime.Segmenter(foreign, threads=1)
    assert caught.value.kind in ("model", "argument")
    with pytest.raises(runtime.Error, match=re.escape(message)):
        runtime.Segmenter.from_bytes(foreign.read_bytes(), threads=1)
    if "AOTI_DEVICE_KEY" not in change:
        with pytest.raises(aoti.PackageError, match=re.escape(message.split(",")[0])):
            aoti.load_package(foreign)
    if CLI.is_file():
        image = tmp_path / "frame.png"
        import cv2

        assert cv2.imwrite(str(image), frames()[1])
        result = run_cli("--model", foreign, "--image", image, "--threads", "1", cwd=tmp_path)
        assert result.returncode in (2, 3), result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and message in lines[0]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.pt2", "frame.png"]


def test_cli_pt_and_pt2_masks_identical(packages, tmp_path):
    if not CLI.is_file():
        pytest.skip(f"{CLI} is not built")
    import cv2

    images = tmp_path / "images"
    images.mkdir()
    for i, frame in enumerate(frames()):
        assert cv2.imwrite(str(images / f"f{i}.png"), frame)
    masks = {}
    for kind in ("pt", "pt2"):
        result = run_cli("--model", packages[kind], "--images", images, "--mask-dir", tmp_path / kind,
                         "--threads", "1", "--quiet")
        assert result.returncode == 0, result.stderr
        masks[kind] = [cv2.imread(str(tmp_path / kind / f"f{i}.png"), cv2.IMREAD_UNCHANGED) for i in range(3)]
    for a, b in zip(masks["pt"], masks["pt2"]):
        assert a is not None and b is not None
        np.testing.assert_array_equal(a, b)


def test_cli_default_prefers_a_runnable_pt2(packages, tmp_path):
    """The default model is the .pt2 where it runs here, else the .pt, with a note."""
    if not CLI.is_file():
        pytest.skip(f"{CLI} is not built")
    import cv2

    (tmp_path / "models").mkdir()
    shutil.copy(packages["pt"], tmp_path / "models" / "emanet_demo.pt")
    shutil.copy(packages["pt2"], tmp_path / "models" / "emanet_demo.pt2")
    assert cv2.imwrite(str(tmp_path / "f.png"), frames()[1])
    result = run_cli("--image", tmp_path / "f.png", "--threads", "1", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"] == "models/emanet_demo.pt2"

    rewrite_tags(packages["pt2"], tmp_path / "models" / "emanet_demo.pt2", emaseg_cpu_flags="avx512_fake_isa")
    result = run_cli("--image", tmp_path / "f.png", "--threads", "1", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"] == "models/emanet_demo.pt"
    assert "avx512_fake_isa" in result.stderr and "using models/emanet_demo.pt" in result.stderr


# ---------------------------------------------------------------------------------------------
# python/export.py --output M.pt2 with an EMANet


@pytest.fixture(scope="session")
def emanet_pt2(tmp_path_factory) -> dict[str, Path]:
    """A narrow random EMANet checkpoint exported without resize to .pt and to .pt2."""
    from emaseg import build_model, get_config, save_checkpoint
    from emaseg.export import ResizePolicy, export_model

    root = tmp_path_factory.mktemp("emanet_pt2")
    torch.manual_seed(0)
    cfg = get_config("emanet_r18w8-d8_128x256_synthetic")
    save_checkpoint(root / "net.pth", build_model(cfg).eval(), cfg)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for suffix in (".pt", ".pt2"):
            export_model(root / "net.pth", root / f"net{suffix}", resize=ResizePolicy("none"))
    finally:
        torch.set_num_threads(previous)
    return {"checkpoint": root / "net.pth", "pt": root / "net.pt", "pt2": root / "net.pt2"}


def test_exported_pt2_equals_pt_everywhere(emanet_pt2, tmp_path):
    from emaseg.export import load_exported, read_metadata

    meta = read_metadata(emanet_pt2["pt2"])
    assert meta["format"] == "emaseg.aoti" and meta["fixed_input"] == {} and meta["frame_models"] == {}
    assert {k: v for k, v in meta.items() if k not in ("format", "fixed_input", "frame_models")} == \
        {k: v for k, v in read_metadata(emanet_pt2["pt"]).items() if k != "format"}
    compiled, _ = load_exported(emanet_pt2["pt2"])
    scripted = torch.jit.load(str(emanet_pt2["pt"]))
    pt2 = runtime.Segmenter(emanet_pt2["pt2"], threads=1)
    rng = np.random.default_rng(5)
    for h, w in ((97, 131), (131, 97), (64, 64)):  # odd, portrait, square
        frame = rng.integers(0, 256, (h, w, 3), np.uint8)
        with torch.inference_mode():
            expected = scripted(torch.from_numpy(frame)[None])[0].numpy()
            np.testing.assert_array_equal(compiled(torch.from_numpy(frame)[None])[0].numpy(), expected)
        np.testing.assert_array_equal(pt2.segment(frame), expected)


def test_export_gate_refuses_a_wrong_package(emanet_pt2, packages, tmp_path, monkeypatch):
    """A package that does not compute the checkpoint's labels is refused and nothing is written:
    here the compile step is replaced by the tiny colour model's package."""
    from emaseg.export import ExportError, ResizePolicy, aoti, export_model

    def wrong_compile(module, metadata, path, *, example, dynamic=True, frame_sizes=()):
        shutil.copy(packages["pt2"], path)
        return {}

    monkeypatch.setattr(aoti, "compile_package", wrong_compile)
    out = tmp_path / "wrong.pt2"
    with pytest.raises(ExportError, match="parity gate failed"):
        export_model(emanet_pt2["checkpoint"], out, resize=ResizePolicy("none"))
    assert list(tmp_path.iterdir()) == []  # no package, no temporary file


def test_export_py_pt2_usage_errors(emanet_pt2, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    export = [sys.executable, str(ROOT / "python" / "export.py"), "--checkpoint", str(emanet_pt2["checkpoint"])]
    bad_suffix = subprocess.run([*export, "--output", str(tmp_path / "m.onnx2")], capture_output=True, text=True)
    assert bad_suffix.returncode == 1 and "the suffix picks the format" in bad_suffix.stderr
    optimize = subprocess.run([*export, "--output", str(tmp_path / "m.pt2"), "--optimize"],
                              capture_output=True, text=True)
    assert optimize.returncode == 1 and "--optimize is for TorchScript files" in optimize.stderr
    sizes = subprocess.run([*export, "--output", str(tmp_path / "m.pt"), "--frame-sizes", "720x1280"],
                           capture_output=True, text=True)
    assert sizes.returncode == 1 and "--frame-sizes is for float .pt2 packages" in sizes.stderr
    bad_size = subprocess.run([*export, "--output", str(tmp_path / "m.pt2"), "--frame-sizes", "720x1280,big"],
                              capture_output=True, text=True)
    assert bad_size.returncode == 2 and "--frame-sizes" in bad_size.stderr
    assert "Traceback" not in bad_suffix.stderr + optimize.stderr + sizes.stderr + bad_size.stderr
    assert list(tmp_path.iterdir()) == []
    inspect = subprocess.run([sys.executable, str(ROOT / "python" / "export.py"), "--inspect", str(emanet_pt2["pt2"])],
                             capture_output=True, text=True)
    assert inspect.returncode == 0 and json.loads(inspect.stdout)["format"] == "emaseg.aoti"


def test_frame_size_package_takes_only_that_size(packages, tmp_path):
    """export.py --frame-size: the size is fixed in the package and checked by the runtime."""
    from emaseg.export import aoti, read_metadata

    make = load_make_test_model()
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fixed = aoti.compile_package(make.TinyColourSegmenter().eval(), make.metadata(), tmp_path / "fixed.pt2",
                                     example=aoti.package_input((96, 160)), dynamic=False)
    finally:
        torch.set_num_threads(previous)
    assert fixed == {"N": 1, "H": 96, "W": 160}  # one frame per call: faster code than a symbolic batch
    assert read_metadata(tmp_path / "fixed.pt2")["fixed_input"] == fixed
    segmenter = runtime.Segmenter(tmp_path / "fixed.pt2", threads=1)
    frame = frames()[1]  # 96x160
    np.testing.assert_array_equal(segmenter.segment(frame), python_labels(packages["pt"], [frame])[0])
    batch = segmenter.segment_batch([frame, frame[::-1].copy()])  # run one by one by the runtime
    np.testing.assert_array_equal(batch[1], python_labels(packages["pt"], [frame[::-1].copy()])[0])
    with pytest.raises(runtime.Error, match=re.escape("takes only 160x96 frames (exported with --frame-size 96x160), not 53x37")) as caught:
        segmenter.segment(frames()[0])
    assert caught.value.kind == "argument"
    if not CLI.is_file():
        return
    # As the CLI's default, a package for one frame size serves only inputs of that size.
    import cv2

    (tmp_path / "models").mkdir()
    shutil.copy(packages["pt"], tmp_path / "models" / "emanet_demo.pt")
    shutil.copy(tmp_path / "fixed.pt2", tmp_path / "models" / "emanet_demo.pt2")
    for name, image in (("same.png", frames()[1]), ("other.png", frames()[0])):
        assert cv2.imwrite(str(tmp_path / name), image)
    same = run_cli("--image", tmp_path / "same.png", "--threads", "1", "--json", cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["model"] == "models/emanet_demo.pt2" and "note" not in same.stderr
    other = run_cli("--image", tmp_path / "other.png", "--threads", "1", "--json", cwd=tmp_path)
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout)["model"] == "models/emanet_demo.pt"
    assert "compiled for 160x96 frames only; using models/emanet_demo.pt" in other.stderr


def test_frame_sizes_package_picks_its_model_by_the_frame_size(packages, tmp_path):
    """export.py --frame-sizes: one more model compiled for exactly each size, named in the
    metadata; the runtime runs it for frames of that size, "model" for the others."""
    from emaseg.export import aoti, read_metadata

    make = load_make_test_model()
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        aoti.compile_package(make.TinyColourSegmenter().eval(), make.metadata(), tmp_path / "sizes.pt2",
                             example=aoti.package_input((96, 160)), dynamic=False, frame_sizes=((37, 53),))
    finally:
        torch.set_num_threads(previous)
    meta = read_metadata(tmp_path / "sizes.pt2")
    assert meta["fixed_input"] == {"N": 1, "H": 96, "W": 160} and meta["frame_models"] == {"37x53": "model_37x53"}
    compiled, _ = aoti.load_package(tmp_path / "sizes.pt2", "cpu", "model_37x53")
    odd, ordinary = frames()[0], frames()[1]
    with torch.inference_mode():
        np.testing.assert_array_equal(compiled(torch.from_numpy(odd)[None])[0].numpy(),
                                      python_labels(packages["pt"], [odd])[0])
    for segmenter in (runtime.Segmenter(tmp_path / "sizes.pt2", threads=1),  # path and bytes
                      runtime.Segmenter.from_bytes((tmp_path / "sizes.pt2").read_bytes(), threads=1)):
        assert segmenter.metadata.frame_sizes == [(53, 37)]
        for frame in (odd, ordinary):
            np.testing.assert_array_equal(segmenter.segment(frame), python_labels(packages["pt"], [frame])[0])
        batch = segmenter.segment_batch([odd, odd[::-1].copy()])  # one frame per call, by the runtime
        np.testing.assert_array_equal(batch[1], python_labels(packages["pt"], [odd[::-1].copy()])[0])
        with pytest.raises(runtime.Error, match=re.escape("takes only 160x96 frames (exported with --frame-size "
                                                          "96x160), not 8x8 or 53x37")):
            segmenter.segment(frames()[2])
    if not CLI.is_file():
        return
    # As the CLI's default, such a package serves every size it has a model for.
    import cv2

    (tmp_path / "models").mkdir()
    shutil.copy(packages["pt"], tmp_path / "models" / "emanet_demo.pt")
    shutil.copy(tmp_path / "sizes.pt2", tmp_path / "models" / "emanet_demo.pt2")
    assert cv2.imwrite(str(tmp_path / "odd.png"), odd)
    run = run_cli("--image", tmp_path / "odd.png", "--threads", "1", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["model"] == "models/emanet_demo.pt2" and "note" not in run.stderr


def test_bfloat16_package_is_gated_against_float32(emanet_pt2, packages, tmp_path, monkeypatch):
    """--dtype bfloat16 .pt2: compared with the float32 module, at least 99% of labels equal;
    a package below that is refused and nothing is written."""
    from emaseg.export import ExportError, ResizePolicy, aoti, export_model, load_exported

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        report = export_model(emanet_pt2["checkpoint"], tmp_path / "bf16.pt2", resize=ResizePolicy("none"),
                              dtype="bfloat16", frame_size=(64, 96))
    finally:
        torch.set_num_threads(previous)
    assert report.metadata["dtype"] == "bfloat16"
    assert all(row["agreement"] >= 0.99 and row["ok"] for row in report.parity)
    compiled, meta = load_exported(tmp_path / "bf16.pt2")
    assert meta["dtype"] == "bfloat16" and meta["fixed_input"] == {"N": 1, "H": 64, "W": 96}
    scripted = torch.jit.load(str(emanet_pt2["pt"]))  # float32
    rng = np.random.default_rng(3)
    smooth = [cv2_smooth(rng, 64, 96) for _ in range(3)]
    with torch.inference_mode():
        equal = [float((compiled(torch.from_numpy(f)[None]) == scripted(torch.from_numpy(f)[None])).double().mean())
                 for f in smooth]
    assert min(equal) >= 0.97, equal  # held-out frames: close to the gate's 99%

    def wrong_compile(module, metadata, path, *, example, dynamic=True, frame_sizes=()):
        shutil.copy(packages["pt2"], path)
        return {}

    monkeypatch.setattr(aoti, "compile_package", wrong_compile)
    with pytest.raises(ExportError, match="of labels equal to float32's"):
        export_model(emanet_pt2["checkpoint"], tmp_path / "wrong.pt2", resize=ResizePolicy("none"),
                     dtype="bfloat16", frame_size=(64, 96))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bf16.pt2"]


def cv2_smooth(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth colour field with noise, like the exporter's parity frames, from another seed."""
    import cv2

    coarse = rng.uniform(0, 255, (max(h // 16, 2), max(w // 16, 2), 3)).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR) + rng.normal(0, 12, (h, w, 3))
    return np.clip(field, 0, 255).astype(np.uint8)
