"""scripts/convert_mmseg.py: bad input gives one clear error line, a non-zero exit and no file."""
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, reference_fixture

SCRIPT = ROOT / "scripts" / "convert_mmseg.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def mmseg_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "r18w16.pth"
    torch.save(reference_fixture("r18w16")["checkpoint"], path)
    return path


def assert_clean_failure(result, out, fragment):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convert_mmseg: error:"), result.stderr
    assert fragment in lines[0]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]  # no temp file left


def test_converts(mmseg_ckpt, tmp_path):
    out = tmp_path / "out.pth"
    result = run(mmseg_ckpt, out)
    assert result.returncode == 0, result.stderr
    assert "emanet_r18w16-d8_512x1024_converted" in result.stdout and out.exists()


def test_recipe_769_sets_slide_and_align_corners(mmseg_ckpt, tmp_path):
    from emaseg import load_checkpoint
    out = tmp_path / "out.pth"
    assert run(mmseg_ckpt, out, "--recipe", "769x769").returncode == 0
    cfg = load_checkpoint(out)["config"]
    assert cfg["model"]["align_corners"] is True and cfg["test"]["mode"] == "slide"


def test_missing_file(tmp_path):
    assert_clean_failure(run(tmp_path / "nope.pth", tmp_path / "out.pth"), tmp_path / "out.pth", "no such file")


def test_truncated_file(mmseg_ckpt, tmp_path):
    bad = tmp_path / "trunc.pth"
    bad.write_bytes(mmseg_ckpt.read_bytes()[: mmseg_ckpt.stat().st_size // 2])
    assert_clean_failure(run(bad, tmp_path / "out.pth"), tmp_path / "out.pth", "not a readable PyTorch checkpoint")


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "notes.pth"
    bad.write_text("hello, I am a text file\n")
    assert_clean_failure(run(bad, tmp_path / "out.pth"), tmp_path / "out.pth", "not a readable PyTorch checkpoint")


def test_tensor_dict_without_weights(tmp_path):
    bad = tmp_path / "list.pth"
    torch.save([1, 2, 3], bad)
    assert_clean_failure(run(bad, tmp_path / "out.pth"), tmp_path / "out.pth", "not a checkpoint")


def test_checkpoint_of_another_model(tmp_path):
    other = tmp_path / "psp.pth"
    torch.save({"meta": {}, "state_dict": {"backbone.stem.0.weight": torch.zeros(32, 3, 3, 3),
                                           "decode_head.psp_modules.0.1.conv.weight": torch.zeros(512, 2048, 1, 1)}}, other)
    assert_clean_failure(run(other, tmp_path / "out.pth"), tmp_path / "out.pth", "not an EMANet checkpoint")


def test_wrong_config(mmseg_ckpt, tmp_path):
    result = run(mmseg_ckpt, tmp_path / "out.pth", "--config", "emanet_r101-d8_512x1024_80k_cityscapes")
    assert_clean_failure(result, tmp_path / "out.pth", "do not fit config emanet_r101-d8_512x1024_80k_cityscapes")


def test_unknown_config(mmseg_ckpt, tmp_path):
    assert_clean_failure(run(mmseg_ckpt, tmp_path / "out.pth", "--config", "nope"), tmp_path / "out.pth", "unknown config")


def test_missing_and_unused_keys_are_named(mmseg_ckpt, tmp_path):
    ckpt = torch.load(mmseg_ckpt, weights_only=True)
    del ckpt["state_dict"]["decode_head.bottleneck.bn.running_var"]
    ckpt["state_dict"]["decode_head.extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pth"
    torch.save(ckpt, bad)
    result = run(bad, tmp_path / "out.pth")
    assert_clean_failure(result, tmp_path / "out.pth", "decode_head.bottleneck.bn.running_var")
    assert "decode_head.extra.weight" in result.stderr


def test_unwritable_output(mmseg_ckpt, tmp_path):
    out = tmp_path / "no" / "such" / "dir" / "out.pth"
    result = run(mmseg_ckpt, out)
    assert result.returncode != 0 and "cannot write" in result.stderr and len(result.stderr.strip().splitlines()) == 1
