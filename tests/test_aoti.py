"""AOTInductor packages (.pt2, format version 2): the tiny contract model's network compiled once
per session, then run by Python, the C++ runtime (Segmenter, from a path and from bytes), the
bindings and the CLI, with the frame work around it, which must agree with the TorchScript file
exactly. Packages built for another CPU, torch or format version are refused with one clear
error, never run.
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
    """tiny.pt (TorchScript) and tiny.pt2 (the same network compiled for any size: dynamic N, H, W)."""
    from emaseg.export import aoti

    make = load_make_test_model()
    root = tmp_path_factory.mktemp("aoti")
    previous = torch.get_num_threads()
    torch.set_num_threads(2)  # a compile of a few seconds; the runs below use 1 thread
    try:
        meta = aoti.compile_package(make.TinyColourNetwork().eval(), make.metadata(), root / "tiny.pt2")
    finally:
        torch.set_num_threads(previous)
    assert meta["any_size"] and meta["network_models"] == {}
    return {"pt": make.make_test_model(root / "tiny.pt"), "pt2": root / "tiny.pt2"}


def compile_tiny(path: Path, **sizes) -> dict:
    """The tiny network compiled into `path` for the given network sizes (compile_package's options)."""
    from emaseg.export import aoti

    make = load_make_test_model()
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        return aoti.compile_package(make.TinyColourNetwork().eval(), make.metadata(), path, **sizes)
    finally:
        torch.set_num_threads(previous)


def frames() -> list[np.ndarray]:
    return [synthetic_frames(3, h, w)[-1] for h, w in SIZES]


def rewrite_tags(source: Path, target: Path, **changes: str) -> Path:
    """A copy of a package whose recorded metadata says something else (what another machine's
    export would record), so the runtime's checks can be tested without that machine."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("/emaseg/package.json"):  # the ema-seg record
                tags = json.loads(data)
                tags.update(changes)
                data = json.dumps(tags).encode()
            zout.writestr(info, data)
    return target


def test_package_metadata_round_trips(packages):
    from emaseg.export import aoti, read_metadata

    meta = read_metadata(packages["pt2"])
    expected = load_make_test_model().metadata()
    assert meta == {**expected, "format": "emaseg.aoti", "format_version": 2, "any_size": True, "network_models": {}}
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
    # avx: a flag every CPU these machines have (AVX2, AVX-512, AMX) has; only the fake one is named.
    ({"emaseg_cpu_flags": "avx avx512_fake_isa"}, "compiled for a CPU with avx512_fake_isa, which this CPU lacks"),
    ({"emaseg_torch_version": "2.1.0+cpu"}, "was compiled with torch 2.1.0+cpu"),
    ({"emaseg_device": "cuda"}, "was compiled for cuda, not for cpu"),
])
def test_packages_for_another_machine_are_refused(packages, tmp_path, change, message):
    from emaseg.export import aoti

    foreign = rewrite_tags(packages["pt2"], tmp_path / "foreign.pt2", **change)
    with pytest.raises(runtime.Error, match=re.escape(message)) as caught:
        runtime.Segmenter(foreign, threads=1)
    assert caught.value.kind in ("model", "argument")
    with pytest.raises(runtime.Error, match=re.escape(message)):
        runtime.Segmenter.from_bytes(foreign.read_bytes(), threads=1)
    if "emaseg_device" not in change:
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


def test_packages_of_format_version_1_are_refused(packages, tmp_path):
    """A version-1 package (frame-size models, before the network models) gets one clear error."""
    from emaseg.export import aoti, read_metadata

    meta = {**read_metadata(packages["pt2"]), "format_version": 1}
    old = rewrite_tags(packages["pt2"], tmp_path / "old.pt2", emaseg_metadata=json.dumps(meta))
    with pytest.raises(runtime.Error, match=re.escape("reads .pt2 packages of version 2; re-export the model")):
        runtime.Segmenter(old, threads=1)
    with pytest.raises(aoti.PackageError, match="format version 1; this ema-seg reads version 2"):
        aoti.load_package(old)


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
        export_model(root / "net.pth", root / "net.pt", resize=ResizePolicy("none"))
        # One fixed network size beside the any-size model: frames of 64x64 run the fixed one.
        export_model(root / "net.pth", root / "net.pt2", resize=ResizePolicy("none"), network_sizes=((64, 64),))
    finally:
        torch.set_num_threads(previous)
    return {"checkpoint": root / "net.pth", "pt": root / "net.pt", "pt2": root / "net.pt2"}


def test_exported_pt2_equals_pt_everywhere(emanet_pt2, tmp_path):
    from emaseg.export import load_exported, read_metadata

    meta = read_metadata(emanet_pt2["pt2"])
    assert meta["format"] == "emaseg.aoti" and meta["any_size"] and meta["network_models"] == {"64x64": "net_64x64"}
    package_keys = ("format", "format_version", "any_size", "network_models")
    assert {k: v for k, v in meta.items() if k not in package_keys} == \
        {k: v for k, v in read_metadata(emanet_pt2["pt"]).items() if k not in package_keys}
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


def wrong_compile(package: Path):
    """A stand-in for aoti.compile_package that writes another model's package (the tiny one, any size)."""
    def compile_package(network, metadata, path, **_):
        from emaseg.export import read_metadata

        shutil.copy(package, path)
        return read_metadata(path)
    return compile_package


def test_export_gate_refuses_a_wrong_package(emanet_pt2, packages, tmp_path, monkeypatch):
    """A package that does not compute the checkpoint's labels is refused and nothing is written:
    here the compile step is replaced by the tiny colour model's package."""
    from emaseg.export import ExportError, ResizePolicy, aoti, export_model

    monkeypatch.setattr(aoti, "compile_package", wrong_compile(packages["pt2"]))
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
    sizes = subprocess.run([*export, "--output", str(tmp_path / "m.pt"), "--aspect-ratios", "16:9"],
                           capture_output=True, text=True)
    assert sizes.returncode == 1 and "--aspect-ratios are for .pt2 packages" in sizes.stderr
    bad_size = subprocess.run([*export, "--output", str(tmp_path / "m.pt2"), "--network-sizes", "720x1280,big"],
                              capture_output=True, text=True)
    assert bad_size.returncode == 2 and "--network-sizes" in bad_size.stderr
    bad_ratio = subprocess.run([*export, "--output", str(tmp_path / "m.pt2"), "--aspect-ratios", "16:0"],
                               capture_output=True, text=True)
    assert bad_ratio.returncode == 2 and "expected W:H with positive integers" in bad_ratio.stderr
    flip = subprocess.run([*export, "--output", str(tmp_path / "m.pt2"), "--flip"], capture_output=True, text=True)
    assert flip.returncode == 1 and "export flip models to a .pt file" in flip.stderr
    add_to = subprocess.run([*export, "--output", str(tmp_path / "m.pt2"), "--add-to", str(emanet_pt2["pt"])],
                            capture_output=True, text=True)
    assert add_to.returncode == 1 and "not a .pt2 package" in add_to.stderr
    errors = bad_suffix.stderr + optimize.stderr + sizes.stderr + bad_size.stderr + bad_ratio.stderr + flip.stderr
    assert "Traceback" not in errors + add_to.stderr
    assert list(tmp_path.iterdir()) == []
    inspect = subprocess.run([sys.executable, str(ROOT / "python" / "export.py"), "--inspect", str(emanet_pt2["pt2"])],
                             capture_output=True, text=True)
    assert inspect.returncode == 0 and json.loads(inspect.stdout)["format"] == "emaseg.aoti"


def test_export_py_adds_network_sizes_to_a_package(emanet_pt2, tmp_path):
    """export.py --add-to: the package gains a compiled size, keeps the others, and is replaced only
    after its gate; another checkpoint or other export options are refused, nothing written."""
    import os
    import subprocess
    import sys

    from conftest import ROOT
    from emaseg.export import read_metadata

    shutil.copy(emanet_pt2["pt2"], tmp_path / "m.pt2")
    export = [sys.executable, str(ROOT / "python" / "export.py"), "--checkpoint", str(emanet_pt2["checkpoint"]),
              "--add-to", str(tmp_path / "m.pt2"), "--output", str(tmp_path / "m.pt2")]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    added = subprocess.run([*export, "--no-resize", "--network-sizes", "48x80"], capture_output=True, text=True,
                           env=env)
    assert added.returncode == 0, added.stderr
    meta = read_metadata(tmp_path / "m.pt2")
    assert meta["network_models"] == {"48x80": "net_48x80", "64x64": "net_64x64"} and meta["any_size"]
    segmenter = runtime.Segmenter(tmp_path / "m.pt2", threads=1)
    scripted = torch.jit.load(str(emanet_pt2["pt"]))
    rng = np.random.default_rng(9)
    for h, w in ((48, 80), (64, 64), (50, 70)):
        frame = rng.integers(0, 256, (h, w, 3), np.uint8)
        with torch.inference_mode():
            np.testing.assert_array_equal(segmenter.segment(frame), scripted(torch.from_numpy(frame)[None])[0].numpy())
    before = (tmp_path / "m.pt2").read_bytes()
    other = subprocess.run([*export, "--network-sizes", "40x40"], capture_output=True, text=True, env=env)
    assert other.returncode == 1 and "was exported with another resize than asked now" in other.stderr, other.stderr
    torch.manual_seed(1)
    from emaseg import build_model, get_config, save_checkpoint

    cfg = get_config("emanet_r18w8-d8_128x256_synthetic")
    save_checkpoint(tmp_path / "other.pth", build_model(cfg).eval(), cfg)
    wrong = subprocess.run([sys.executable, str(ROOT / "python" / "export.py"), "--checkpoint", str(tmp_path / "other.pth"),
                            "--add-to", str(tmp_path / "m.pt2"), "--output", str(tmp_path / "m.pt2"), "--no-resize",
                            "--network-sizes", "40x40"], capture_output=True, text=True, env=env)
    assert wrong.returncode == 1 and "was exported from another checkpoint" in wrong.stderr, wrong.stderr
    assert (tmp_path / "m.pt2").read_bytes() == before
    assert "Traceback" not in other.stderr + wrong.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt2", "other.pth"]


def test_package_without_the_any_size_model_takes_only_its_sizes(packages, tmp_path):
    """--frame-size / --no-any-size: frames of other network sizes are refused with the command
    that adds theirs; as the CLI's default, such a package gives way to the .pt."""
    from emaseg.export import read_metadata

    meta = compile_tiny(tmp_path / "fixed.pt2", network_sizes=((96, 160),), any_size=False)
    assert meta["network_models"] == {"96x160": "net_96x160"} and not meta["any_size"]
    assert read_metadata(tmp_path / "fixed.pt2") == meta
    segmenter = runtime.Segmenter(tmp_path / "fixed.pt2", threads=1)
    assert segmenter.metadata.network_sizes == [(160, 96)] and not segmenter.metadata.any_size
    frame = frames()[1]  # 96x160
    np.testing.assert_array_equal(segmenter.segment(frame), python_labels(packages["pt"], [frame])[0])
    batch = segmenter.segment_batch([frame, frame[::-1].copy()])  # one frame per call, by the runtime
    np.testing.assert_array_equal(batch[1], python_labels(packages["pt"], [frame[::-1].copy()])[0])
    with pytest.raises(runtime.Error, match=re.escape("has no model for 53x37 frames (network input 37x53) and no "
                                                      "any-size model; add it with python python/export.py")) as caught:
        segmenter.segment(frames()[0])
    assert caught.value.kind == "argument"
    if not CLI.is_file():
        return
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
    assert "no model for these frames' network size and no any-size model; using models/emanet_demo.pt" in other.stderr


def test_network_sizes_package_picks_its_model_and_grows(packages, tmp_path):
    """A package with fixed network sizes runs each frame on the model for its network size, the
    any-size model for the others; --add-to adds a size and keeps the rest."""
    from emaseg.export import aoti, read_metadata

    meta = compile_tiny(tmp_path / "sizes.pt2", network_sizes=((37, 53),))
    assert meta["network_models"] == {"37x53": "net_37x53"} and meta["any_size"]
    odd, ordinary = frames()[0], frames()[1]
    compiled, _ = aoti.load_package(tmp_path / "sizes.pt2")
    with torch.inference_mode():
        for frame in (odd, ordinary):
            np.testing.assert_array_equal(compiled(torch.from_numpy(frame)[None])[0].numpy(),
                                          python_labels(packages["pt"], [frame])[0])
    for segmenter in (runtime.Segmenter(tmp_path / "sizes.pt2", threads=1),  # path and bytes
                      runtime.Segmenter.from_bytes((tmp_path / "sizes.pt2").read_bytes(), threads=1)):
        assert segmenter.metadata.network_sizes == [(53, 37)]
        assert segmenter.metadata.compiled_for(53, 37) and not segmenter.metadata.compiled_for(160, 96)
        for frame in (odd, ordinary):
            np.testing.assert_array_equal(segmenter.segment(frame), python_labels(packages["pt"], [frame])[0])
        batch = segmenter.segment_batch([odd, odd[::-1].copy()])
        np.testing.assert_array_equal(batch[1], python_labels(packages["pt"], [odd[::-1].copy()])[0])

    grown = compile_tiny(tmp_path / "grown.pt2", network_sizes=((96, 160), (37, 53)), add_to=tmp_path / "sizes.pt2")
    assert grown["network_models"] == {"37x53": "net_37x53", "96x160": "net_96x160"} and grown["any_size"]
    assert read_metadata(tmp_path / "grown.pt2") == grown
    with zipfile.ZipFile(tmp_path / "grown.pt2") as archive:  # both compiled models, one any-size network
        names = archive.namelist()
    assert {n.split("/")[3] for n in names if "/data/aotinductor/" in n} == {"net_37x53", "net_96x160"}
    assert sum(n.endswith("/emaseg/any_size.pt") for n in names) == 1
    segmenter = runtime.Segmenter(tmp_path / "grown.pt2", threads=1)
    assert sorted(segmenter.metadata.network_sizes) == [(53, 37), (160, 96)]
    for frame in frames():
        np.testing.assert_array_equal(segmenter.segment(frame), python_labels(packages["pt"], [frame])[0])
    if not CLI.is_file():
        return
    # The CLI says once, on stderr, when frames run on the any-size model, and how to compile theirs.
    import cv2

    images = tmp_path / "images"
    images.mkdir()
    for i, frame in enumerate((ordinary, ordinary[::-1].copy(), odd)):
        assert cv2.imwrite(str(images / f"f{i}.png"), frame)
    run = run_cli("--model", tmp_path / "sizes.pt2", "--images", images, "--threads", "1", "--json",
                  "--output", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    notes = [line for line in run.stderr.splitlines() if "any-size model" in line]
    assert len(notes) == 1, run.stderr  # two 96x160 frames, one note; the 37x53 frame has its model
    assert "note: 160x96 frames run the network at 96x160, which " in notes[0]
    assert notes[0].endswith(f"--add-to {tmp_path / 'sizes.pt2'} --output {tmp_path / 'sizes.pt2'} "
                             "--network-sizes 96x160")
    quiet = run_cli("--model", tmp_path / "grown.pt2", "--images", images, "--threads", "1", "--json",
                    "--output", tmp_path / "out2")
    assert quiet.returncode == 0 and "any-size" not in quiet.stderr, quiet.stderr


def test_bfloat16_package_is_gated_against_float32(emanet_pt2, packages, tmp_path, monkeypatch):
    """--dtype bfloat16 .pt2: compared with the float32 module, at least 99% of labels equal;
    a package below that is refused and nothing is written. Every frame is resized to the 64x96
    network input, so the frame work runs on bfloat16 scores: the C++ runtime equals Python."""
    from emaseg.export import ExportError, ResizePolicy, aoti, export_model, load_exported

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        report = export_model(emanet_pt2["checkpoint"], tmp_path / "bf16.pt2", resize=ResizePolicy("size", size=(64, 96)),
                              dtype="bfloat16", frame_size=(64, 96))
    finally:
        torch.set_num_threads(previous)
    assert report.metadata["dtype"] == "bfloat16"
    assert all(row["agreement"] >= 0.99 and row["ok"] for row in report.parity)
    compiled, meta = load_exported(tmp_path / "bf16.pt2")
    assert meta["dtype"] == "bfloat16" and meta["network_models"] == {"64x96": "net_64x96"} and not meta["any_size"]
    scripted = torch.jit.load(str(emanet_pt2["pt"]))  # float32
    rng = np.random.default_rng(3)
    smooth = [cv2_smooth(rng, 64, 96) for _ in range(3)]
    with torch.inference_mode():
        equal = [float((compiled(torch.from_numpy(f)[None]) == scripted(torch.from_numpy(f)[None])).double().mean())
                 for f in smooth]
    assert min(equal) >= 0.97, equal  # held-out frames: close to the gate's 99%
    segmenter = runtime.Segmenter(tmp_path / "bf16.pt2", threads=1)
    for h, w in ((64, 96), (97, 131), (40, 60), (150, 64)):  # the resize and frame labels in bfloat16
        frame = cv2_smooth(rng, h, w)
        with torch.inference_mode():
            np.testing.assert_array_equal(segmenter.segment(frame), compiled(torch.from_numpy(frame)[None])[0].numpy())

    monkeypatch.setattr(aoti, "compile_package", wrong_compile(packages["pt2"]))
    with pytest.raises(ExportError, match="of labels equal to float32's"):
        export_model(emanet_pt2["checkpoint"], tmp_path / "wrong.pt2", resize=ResizePolicy("size", size=(64, 96)),
                     dtype="bfloat16", frame_size=(64, 96))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bf16.pt2"]


def cv2_smooth(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth colour field with noise, like the exporter's parity frames, from another seed."""
    import cv2

    coarse = rng.uniform(0, 255, (max(h // 16, 2), max(w // 16, 2), 3)).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR) + rng.normal(0, 12, (h, w, 3))
    return np.clip(field, 0, 255).astype(np.uint8)
