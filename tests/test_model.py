"""Model structure, the EMA unit's behaviour, scripting and full-size conversion."""
import math
import re

import pytest
import torch

from conftest import REFERENCE, missing
from emaseg import build_model, get_config, load_model
from emaseg.convert import convert
from emaseg.models import EMAModule

TINY = "emanet_r18w8-d8_128x256_synthetic"


def count(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@pytest.mark.parametrize("name,total,backbone", [
    ("emanet_r50-d8_512x1024_80k_cityscapes", 42_349_958, 23_527_264),
    ("emanet_r101-d8_512x1024_80k_cityscapes", 61_342_086, 42_519_392),
])
def test_full_size_parameter_counts(name, total, backbone):
    model = build_model(get_config(name))
    assert count(model) == total
    assert count(model.backbone) == backbone
    assert count(model.decode_head) == 16_458_003
    assert count(model.decode_head, trainable_only=True) == 16_458_003 - 262_656  # ema_mid_conv frozen
    assert count(model.auxiliary_head) == 2_364_691
    if name.startswith("emanet_r50"):
        assert count(model, trainable_only=True) == 42_087_302


def _synthesise(keys_file) -> dict[str, torch.Tensor]:
    sd = {}
    for line in keys_file.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape, dtype = line.split("\t")
        dims = [int(d) for d in re.findall(r"\d+", shape)]
        sd[key] = torch.zeros(dims, dtype=getattr(torch, dtype))
    return sd


@pytest.mark.parametrize("depth,entries", [(50, 367), (101, 673)])
def test_reference_key_lists_convert_with_every_key_used(tmp_path, depth, entries):
    keys_file = REFERENCE / f"mmseg_emanet_r{depth}_keys.txt"
    if not keys_file.exists():
        missing(f"{keys_file} not found")
    sd = _synthesise(keys_file)
    assert len(sd) == entries
    for i, k in enumerate(sd):  # distinct values, so a key loaded into the wrong slot would show
        if sd[k].is_floating_point():
            sd[k].fill_(i / 1000)
    torch.save({"meta": {"mmseg_version": "1.2.2"}, "state_dict": sd}, tmp_path / "src.pth")
    cfg = convert(tmp_path / "src.pth", tmp_path / "dst.pth")
    assert cfg.name == f"emanet_r{depth}-d8_512x1024_80k_cityscapes"
    loaded = load_model(tmp_path / "dst.pth").state_dict()
    assert set(loaded) == set(sd)
    for k, v in sd.items():
        assert torch.equal(loaded[k], v), k


def test_outputs_and_modes():
    model = build_model(get_config(TINY))
    x = torch.randn(2, 3, 64, 96)
    out = model.train()(x)
    assert set(out) == {"out", "aux"} and out["out"].shape == (2, 19, 8, 12) == out["aux"].shape
    out = model.eval()(x)
    assert set(out) == {"out"}


def test_bases_are_unit_norm_at_init():
    ema = EMAModule(channels=32, num_bases=16, num_stages=3, momentum=0.1)
    torch.testing.assert_close(ema.bases.norm(dim=1), torch.ones(1, 16))


def _expected_update(bases: torch.Tensor, feats: torch.Tensor, stages: int, momentum: float) -> torch.Tensor:
    """The spec's update, written independently with bmm instead of einsum."""
    b, c, h, w = feats.shape
    f = feats.reshape(b, c, h * w)
    mu = bases.repeat(b, 1, 1)
    for _ in range(stages):
        z = torch.softmax(torch.bmm(f.transpose(1, 2), mu), dim=2)      # (B, N, K)
        z_ = z / z.sum(dim=1, keepdim=True).clamp_min(1e-12)
        mu = torch.bmm(f, z_)
        mu = mu / mu.norm(dim=1, keepdim=True).clamp_min(1e-12)
    batch = mu.mean(0, keepdim=True)
    batch = batch / batch.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (1 - momentum) * bases + momentum * batch


def test_training_forward_updates_bases_as_specified():
    torch.manual_seed(0)
    ema = EMAModule(channels=32, num_bases=16, num_stages=3, momentum=0.1).train()
    feats = torch.randn(3, 32, 5, 7)
    before = ema.bases.clone()
    ema(feats)
    torch.testing.assert_close(ema.bases, _expected_update(before, feats, 3, 0.1), rtol=1e-5, atol=1e-6)
    # The moving average is not re-normalised (as the reference): norms drop below 1.
    assert ema.bases.norm(dim=1).max() < 1 - 1e-4


def test_eval_is_deterministic_and_leaves_bases():
    torch.manual_seed(0)
    model = build_model(get_config(TINY)).eval()
    before = model.decode_head.ema_module.bases.clone()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x)["out"], model(x)["out"]
    assert torch.equal(a, b)
    assert torch.equal(model.decode_head.ema_module.bases, before)


def test_em_loop_has_no_gradient_and_mid_conv_is_frozen():
    model = build_model(get_config(TINY)).train()
    model(torch.randn(2, 3, 64, 64))["out"].sum().backward()
    head = model.decode_head
    assert all(not p.requires_grad and p.grad is None for p in head.ema_mid_conv.parameters())
    assert head.ema_in_conv.conv.weight.grad is not None  # through the identity path


def test_scripted_eval_model_equals_eager(tmp_path):
    torch.manual_seed(0)
    model = build_model(get_config(TINY)).eval()
    scripted = torch.jit.script(model)
    torch.jit.save(scripted, tmp_path / "m.pt")
    reloaded = torch.jit.load(tmp_path / "m.pt")
    for shape in [(1, 3, 64, 96), (2, 3, 77, 101)]:
        x = torch.randn(shape)
        with torch.no_grad():
            assert torch.equal(reloaded(x)["out"], model(x)["out"])
    assert "distributed" not in reloaded.code  # the exported path never calls torch.distributed


def test_output_stride_16_and_init():
    cfg = get_config(TINY).override(["model.output_stride=16"])
    model = build_model(cfg).eval()
    assert model(torch.randn(1, 3, 64, 64))["out"].shape[-2:] == (4, 4)
    blocks = [m for m in model.backbone.modules() if hasattr(m, "last_norm")]
    assert blocks and all(b.last_norm().weight.abs().sum().item() == 0 for b in blocks)  # zero-init residual
    std = model.decode_head.conv_seg.weight.std().item()
    assert math.isclose(std, 0.01, rel_tol=0.3)
