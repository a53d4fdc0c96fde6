"""python/export.py: the exported file equals the eager model, carries its metadata, refuses bad input."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, assert_close_to_reference, eager_logits, reference_fixture
from emaseg import build_model, get_config, load_model, save_checkpoint
from emaseg.export import ExportError, ResizePolicy, export_model, load_exported, read_metadata
from emaseg.export.exporter import parity_frames
from emaseg.inference import rescale_size

EXPORT = ROOT / "python" / "export.py"
TINY = "emanet_r18w8-d8_128x256_synthetic"


@pytest.fixture(autouse=True)
def two_threads():
    """The reference fixtures reproduce within their bound with 2 threads (see test_reference_parity)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def reference_ckpt(tmp_path_factory):
    """The r18w16 reference checkpoint converted to ours: real, non-trivial logits."""
    tmp = tmp_path_factory.mktemp("ref")
    torch.save(reference_fixture("r18w16")["checkpoint"], tmp / "mmseg.pth")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_mmseg.py"), str(tmp / "mmseg.pth"),
                    str(tmp / "ours.pth")], check=True, capture_output=True)
    return tmp / "ours.pth"


def run_export(*args):
    return subprocess.run([sys.executable, str(EXPORT), *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def exported_96x160(reference_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "m.pt"
    export_model(reference_ckpt, out, resize=ResizePolicy("size", size=(96, 160)))
    return load_exported(out)[0]


@pytest.mark.parametrize("hw", [(97, 131), (120, 200), (203, 301), (64, 64)])
def test_exported_equals_eager(reference_ckpt, exported_96x160, hw):
    exported = exported_96x160
    model = load_model(reference_ckpt)
    rng = np.random.default_rng(hw[0])
    frames = [rng.integers(0, 256, (*hw, 3), dtype=np.uint8),
              parity_frames(((1, *hw),), seed=hw[1])[0][0].numpy()]
    for bgr in frames:
        expected = eager_logits(model, bgr, (96, 160))
        batch = torch.from_numpy(bgr)[None]
        with torch.no_grad():
            got = exported.logits(batch)
            labels = exported(batch)
        assert (got[0] - expected).abs().max() <= 1e-4  # same float32 kernels; measured 0 to 1e-6
        assert labels.dtype == torch.uint8 and labels.shape == (1, *hw)
        assert torch.equal(labels[0].long(), expected.argmax(0))
        probs = exported.probabilities(batch)
        torch.testing.assert_close(probs.sum(1), torch.ones(1, *hw))


def test_config_scale_resize_and_batches(tmp_path):
    torch.manual_seed(0)
    cfg = get_config(TINY)
    save_checkpoint(tmp_path / "c.pth", build_model(cfg), cfg)
    export_model(tmp_path / "c.pth", tmp_path / "m.pt")
    exported, meta = load_exported(tmp_path / "m.pt")
    assert meta["resize"] == {"type": "scale", "scale": list(cfg.data.test_scale)}
    model = load_model(tmp_path / "c.pth")
    frames = parity_frames(((3, 90, 170),), seed=5)[0]
    batch_labels = exported(frames)
    for i in range(3):
        bgr = frames[i].numpy()
        expected = eager_logits(model, bgr, rescale_size(90, 170, cfg.data.test_scale))
        assert torch.equal(batch_labels[i].long(), expected.argmax(0))


def test_metadata_round_trips(reference_ckpt, tmp_path):
    out = tmp_path / "m.pt"
    export_model(reference_ckpt, out, flip=True, mode="slide", resize=ResizePolicy("size", size=(96, 160)))
    meta = read_metadata(out)
    model = load_model(reference_ckpt)
    assert meta["format"] == "emaseg.torchscript" and meta["format_version"] == 1
    assert meta["class_names"] == model.class_names and meta["palette"] == [list(c) for c in model.palette]
    assert meta["num_classes"] == 19 and meta["mode"] == "slide" and meta["flip"] is True
    assert meta["resize"] == {"type": "size", "size": [96, 160]}
    assert meta["config_name"] == model.config.name and meta["dtype"] == "float32"
    assert meta["torch_version"] == torch.__version__
    import hashlib
    assert meta["checkpoint_sha256"] == hashlib.sha256(reference_ckpt.read_bytes()).hexdigest()
    # The same JSON through torch's own loader (what the C++ runtime uses).
    extra = {"metadata.json": ""}
    torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["metadata.json"]) == meta
    printed = run_export("--inspect", out)
    assert printed.returncode == 0 and json.loads(printed.stdout) == meta


@pytest.mark.parametrize("name", ["r18w16", "r50w8"])
def test_reference_end_to_end(tmp_path, name):
    """mmseg checkpoint -> convert_mmseg.py -> export.py -> exported file gives the reference's labels."""
    fx = reference_fixture(name)
    torch.save(fx["checkpoint"], tmp_path / "mmseg.pth")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_mmseg.py"), str(tmp_path / "mmseg.pth"),
                    str(tmp_path / "ours.pth")], check=True, capture_output=True)
    result = run_export("--checkpoint", tmp_path / "ours.pth", "--output", tmp_path / "m.pt", "--no-resize")
    assert result.returncode == 0, result.stderr
    exported, _ = load_exported(tmp_path / "m.pt")
    labels = exported(fx["raw_bgr_image"][None])[0]
    assert torch.equal(labels.long(), fx["predict_labels"].long())
    assert_close_to_reference(exported.logits(fx["raw_bgr_image"][None])[0], fx["predict_seg_logits"])


def test_slide_and_flip_modes(reference_ckpt, tmp_path):
    """Slide with a window covering the frame equals whole; flip averages the mirrored pass."""
    export_model(reference_ckpt, tmp_path / "whole.pt", resize=ResizePolicy("none"), mode="whole")
    export_model(reference_ckpt, tmp_path / "slide.pt", resize=ResizePolicy("none"), mode="slide")
    export_model(reference_ckpt, tmp_path / "flip.pt", resize=ResizePolicy("none"), flip=True)
    whole, _ = load_exported(tmp_path / "whole.pt")
    slide, _ = load_exported(tmp_path / "slide.pt")   # config window 769x769 covers the frame
    flip, _ = load_exported(tmp_path / "flip.pt")
    f = parity_frames(((1, 150, 230),), seed=9)[0]
    torch.testing.assert_close(slide.logits(f), whole.logits(f), rtol=0, atol=1e-6)
    mirrored = whole.probabilities(f.flip(2)).flip(3)
    torch.testing.assert_close(flip.probabilities(f), (whole.probabilities(f) + mirrored) / 2, rtol=1e-5, atol=1e-6)


def test_optimize_keeps_parity(reference_ckpt, tmp_path):
    result = run_export("--checkpoint", reference_ckpt, "--output", tmp_path / "o.pt", "--optimize", "--size", "96x160")
    assert result.returncode == 0, result.stderr
    assert "labels identical" in result.stdout and "ms per" in result.stdout
    plain = tmp_path / "p.pt"
    export_model(reference_ckpt, plain, resize=ResizePolicy("size", size=(96, 160)))
    a, _ = load_exported(plain)
    b, _ = load_exported(tmp_path / "o.pt")
    f = parity_frames(((1, 111, 222),), seed=2)[0]
    assert torch.equal(a(f), b(f))
    assert (a.logits(f) - b.logits(f)).abs().max() <= 1e-4  # BN folding reorders float sums


def test_bfloat16_label_agreement(reference_ckpt, tmp_path):
    export_model(reference_ckpt, tmp_path / "f32.pt", resize=ResizePolicy("none"))
    export_model(reference_ckpt, tmp_path / "bf16.pt", resize=ResizePolicy("none"), dtype="bfloat16")
    a, _ = load_exported(tmp_path / "f32.pt")
    b, meta = load_exported(tmp_path / "bf16.pt")
    assert meta["dtype"] == "bfloat16"
    agree = [(a(f) == b(f)).float().mean().item() for f in parity_frames(((1, 97, 131), (1, 200, 300)), seed=3)]
    assert min(agree) >= 0.96, agree  # measured 0.978-0.983 on this checkpoint (r50w8: 0.999)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="float16 kernels need CUDA")
def test_float16_label_agreement_cuda(reference_ckpt, tmp_path):
    export_model(reference_ckpt, tmp_path / "f32.pt", resize=ResizePolicy("none"), device="cuda")
    export_model(reference_ckpt, tmp_path / "f16.pt", resize=ResizePolicy("none"), dtype="float16", device="cuda")
    a, _ = load_exported(tmp_path / "f32.pt", "cuda")
    b, _ = load_exported(tmp_path / "f16.pt", "cuda")
    f = parity_frames(((1, 200, 300),), seed=3)[0].cuda()
    assert (a(f) == b(f)).float().mean().item() >= 0.96


def test_exported_module_rejects_bad_frames(reference_ckpt, tmp_path):
    export_model(reference_ckpt, tmp_path / "m.pt", resize=ResizePolicy("none"))
    m, _ = load_exported(tmp_path / "m.pt")
    for bad, msg in [(torch.zeros(1, 20, 20, 3, dtype=torch.float32), "uint8"),
                     (torch.zeros(1, 20, 20, 4, dtype=torch.uint8), "N x H x W x 3"),
                     (torch.zeros(1, 4, 4, 3, dtype=torch.uint8), "smaller than 8x8")]:
        with pytest.raises(Exception, match=msg):
            m(bad)


def _assert_refused(result, out, fragment):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("export: error:") and fragment in lines[0], result.stderr
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))


def test_bad_input(reference_ckpt, tmp_path):
    out = tmp_path / "m.pt"
    _assert_refused(run_export("--checkpoint", tmp_path / "nope.pth", "--output", out), out, "no such file")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(reference_ckpt.read_bytes()[:1000])
    _assert_refused(run_export("--checkpoint", corrupt, "--output", out), out, "not a readable PyTorch checkpoint")
    ckpt = torch.load(reference_ckpt, weights_only=True)
    ckpt["config"]["model"]["no_such_field"] = 1
    torch.save(ckpt, tmp_path / "unknown.pth")
    _assert_refused(run_export("--checkpoint", tmp_path / "unknown.pth", "--output", out), out, "unknown or invalid config")
    _assert_refused(run_export("--checkpoint", reference_ckpt, "--output", out, "--size", "4x6"), out, "too small")
    _assert_refused(run_export("--checkpoint", reference_ckpt, "--output", out, "--size", "big"), out, "HxW")
    bad_out = tmp_path / "missing" / "m.pt"
    result = run_export("--checkpoint", reference_ckpt, "--output", bad_out)
    assert result.returncode != 0 and "cannot write" in result.stderr and not bad_out.exists()
    _assert_refused(run_export("--inspect", reference_ckpt), tmp_path / "none.pt", "not a TorchScript archive")


def test_parity_gate_refuses_and_writes_nothing(reference_ckpt, tmp_path, monkeypatch):
    """A saved file that diverges from the eager module must not be written."""
    real_load = torch.jit.load

    def tampered_load(*args, **kwargs):
        loaded = real_load(*args, **kwargs)
        with torch.no_grad():
            loaded.seg.net.decode_head.conv_seg.bias.add_(5.0 * torch.arange(19.0))
        return loaded

    monkeypatch.setattr(torch.jit, "load", tampered_load)
    out = tmp_path / "m.pt"
    with pytest.raises(ExportError, match="parity gate failed"):
        export_model(reference_ckpt, out, resize=ResizePolicy("none"))
    assert not out.exists() and not list(tmp_path.glob(".m.pt*"))


def test_slide_export_equals_evaluation_slide(tmp_path):
    """The exported slide mode runs exactly evaluate.py's slide path (emaseg.inference.predict_logits),
    with windows that really slide (crop 64, stride 48 on a 128x256 network input)."""
    from emaseg.inference import predict_logits, slide_windows

    torch.manual_seed(0)
    cfg = get_config(TINY).override(["test.crop_size=[64,64]", "test.stride=[48,48]", "test.mode=slide"])
    model = build_model(cfg).eval()
    with torch.no_grad():  # non-trivial BN statistics, so windows give distinct logits
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    save_checkpoint(tmp_path / "c.pth", model, cfg)
    export_model(tmp_path / "c.pth", tmp_path / "slide.pt")
    exported, meta = load_exported(tmp_path / "slide.pt")
    assert meta["mode"] == "slide" and meta["slide"] == {"crop_size": [64, 64], "stride": [48, 48]}
    assert len(slide_windows(128, 256, (64, 64), (48, 48))) == 3 * 5
    frames = parity_frames(((2, 100, 190),), seed=4)[0]
    with torch.no_grad():
        expected = predict_logits(load_model(tmp_path / "c.pth"), frames, cfg)
    got = exported.logits(frames)
    assert (got - expected).abs().max() <= 1e-4
    assert torch.equal(exported(frames).long(), expected.argmax(1))
