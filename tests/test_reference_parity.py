"""Our EMANet equals mmsegmentation 1.2.2's: the reference's own outputs, reproduced from its
checkpoint after conversion with scripts/convert_mmseg.py.

Tolerance rtol=atol=1e-5: both sides compute in float32 on the CPU with the same op order, so the
only differences are the summation orders inside convolution kernels (measured ~1e-6).
"""
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, reference_fixture
from emaseg import load_model
from emaseg.inference import SegInference, preprocess

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(autouse=True)
def reference_threads():
    """The fixtures were computed multi-threaded; oneDNN's single-thread convolutions sum in
    another order and drift to 3e-5 on the R-50 fixture's large activations. 2 threads (what
    CI has) reproduce the reference's summation within 1e-5; 4 do too (measured)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module", params=["r18w16", "r50w8"])
def converted(request, tmp_path_factory):
    fx = reference_fixture(request.param)
    tmp = tmp_path_factory.mktemp(request.param)
    src, dst = tmp / "mmseg.pth", tmp / "emaseg.pth"
    torch.save(fx["checkpoint"], src)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_mmseg.py"), str(src), str(dst)],
                   check=True, capture_output=True)
    return fx, dst


def test_backbone_and_heads(converted):
    fx, path = converted
    model = load_model(path)
    with torch.no_grad():
        feats = model.backbone(fx["input"])
        for ours, ref in zip(feats, fx["backbone_feats"], strict=True):
            torch.testing.assert_close(ours, ref, **TOL)
        torch.testing.assert_close(model(fx["input"])["out"], fx["eval_logits"], **TOL)
        torch.testing.assert_close(model.auxiliary_head(feats[2]), fx["eval_aux_logits"], **TOL)


def test_whole_image_prediction(converted):
    fx, path = converted
    model = load_model(path)
    cfg = model.config
    mean, std = torch.tensor(cfg.data.mean), torch.tensor(cfg.data.std)
    seg = SegInference(model, num_classes=cfg.model.num_classes, align_corners=cfg.model.align_corners)
    with torch.no_grad():
        logits = seg(preprocess(fx["raw_bgr_image"][None], mean, std, cfg.data.bgr_to_rgb))[0]
    torch.testing.assert_close(logits, fx["predict_seg_logits"], **TOL)
    assert torch.equal(logits.argmax(0), fx["predict_labels"].to(torch.int64))


def test_bases_after_one_train_forward(converted):
    fx, path = converted
    model = load_model(path).train()
    with torch.no_grad():
        model(fx["input"])
    torch.testing.assert_close(model.decode_head.ema_module.bases, fx["bases_after_one_train_forward"], **TOL)


def test_build_args_match_inferred_config(converted):
    fx, path = converted
    args, m = fx["build_args"], load_model(path).config.model
    assert (m.depth, m.stem_channels, m.base_channels) == (args["depth"], args["stem_channels"], args["base_channels"])
    assert (m.channels, m.ema_channels, m.num_bases) == (args["channels"], args["ema_channels"], args["num_bases"])
    assert (m.num_stages, m.momentum, m.num_classes, m.align_corners) == (
        args["num_stages"], args["momentum"], args["num_classes"], args["align_corners"])
