"""train.py end to end on a tiny generated street-scene tree (CPU, tiny config)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import emaseg
import fake_data
from emaseg.checkpoint import load_checkpoint
from emaseg.data.datasets import DatasetError
from emaseg.training.pretrained import PretrainedError, load_pretrained

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
import train  # noqa: E402

torch.set_num_threads(1)
CONFIG = "emanet_r18w8-d8_128x256_synthetic"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return fake_data.cityscapes_tree(tmp_path_factory.mktemp("synth"), train=8, val=2)


def run(data_root: Path, work_dir: Path, *extra: str, iters: int = 6, workers: int = 0) -> torch.nn.Module:
    args = train.get_args_parser().parse_args([
        "--config", CONFIG, "--data-root", str(data_root), "--work-dir", str(work_dir), "--device", "cpu",
        "--iters", str(iters), "--batch-size", "2", "--workers", str(workers), "--val-interval", "0", *extra])
    return train.main(args)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["state_dict"]


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_is_bit_exact(data_root, tmp_path, workers):
    """6 straight iterations == 3, stop, resume, 3 more: weights, BN stats, EMA bases, momentum."""
    run(data_root, tmp_path / "straight", workers=workers)
    run(data_root, tmp_path / "split", "--stop-at", "3", workers=workers)
    assert load_checkpoint(tmp_path / "split" / "latest.pth")["train_state"]["iteration"] == 3
    run(data_root, tmp_path / "split", "--resume", "auto", workers=workers)
    straight, split = (load_checkpoint(tmp_path / d / "latest.pth") for d in ("straight", "split"))
    assert straight["train_state"]["iteration"] == split["train_state"]["iteration"] == 6
    assert_same(straight["state_dict"], split["state_dict"])
    momentum = [s["momentum_buffer"] for s in straight["train_state"]["optimizer"]["state"].values()]
    momentum_split = [s["momentum_buffer"] for s in split["train_state"]["optimizer"]["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(momentum, momentum_split)) and momentum
    # The resumed log reads as one run: 3 + 3 training records, no duplicates.
    iters = [r["iter"] for r in map(json.loads, (tmp_path / "split" / "log.jsonl").read_text().splitlines())
             if r["type"] == "train"]
    assert iters == sorted(set(iters)) and iters[-1] == 6


def test_nan_loss_stops_and_keeps_checkpoint(data_root, tmp_path):
    run(data_root, tmp_path, "--stop-at", "2")
    latest = tmp_path / "latest.pth"
    before = latest.read_bytes()
    # std 0 -> inf inputs -> NaN loss at the first resumed iteration.
    out = subprocess.run([sys.executable, str(ROOT / "python" / "train.py"), "--config", CONFIG,
                          "--data-root", str(data_root), "--work-dir", str(tmp_path), "--device", "cpu",
                          "--iters", "6", "--batch-size", "2", "--workers", "0", "--val-interval", "0",
                          "--resume", "auto", "--set", "data.std=[0,0,0]"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode != 0
    assert "error: loss is nan at iteration 3" in out.stderr
    assert f"the last good checkpoint {latest} (iteration 2) is untouched" in out.stderr
    assert "Traceback" not in out.stderr
    assert latest.read_bytes() == before


def test_training_reduces_loss_and_validates(data_root, tmp_path):
    args = train.get_args_parser().parse_args([
        "--config", CONFIG, "--data-root", str(data_root), "--work-dir", str(tmp_path), "--device", "cpu",
        "--iters", "30", "--batch-size", "2", "--workers", "0", "--val-interval", "15",
        "--set", "schedule.log_interval=5", "schedule.lr=0.02"])
    train.main(args)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["type"] == "train"]
    assert len(losses) == 6
    # Tolerance: any learning at all halves nothing this early; 15% below the start is unmistakable.
    assert losses[-1] < 0.85 * losses[0], losses
    vals = [r for r in records if r["type"] == "val"]
    assert [r["iter"] for r in vals] == [15, 30] and all(0 <= r["mIoU"] <= 100 for r in vals)
    best = load_checkpoint(tmp_path / "best.pth")
    assert best["mIoU"] == max(r["mIoU"] for r in vals) and best["class_names"][13] == "car"
    assert "train_state" not in best  # best.pth is a model file; latest.pth holds the resume state
    assert (tmp_path / "curves.png").stat().st_size > 1000
    model = emaseg.load_model(tmp_path / "latest.pth")  # latest.pth is a usable model file too
    assert not model.training


def test_ddp_two_processes_keep_weights_identical(data_root, tmp_path):
    """torchrun, gloo, train.py's own loop: every parameter and the EMA bases agree across ranks."""
    script = tmp_path / "ddp.py"
    script.write_text(
        "import os, sys, torch\n"
        f"sys.path.insert(0, {str(ROOT / 'python')!r})\n"
        "import train\n"
        "torch.set_num_threads(1)\n"
        "model = train.main(train.get_args_parser().parse_args(sys.argv[2:]))\n"
        "torch.save(model.state_dict(), os.path.join(sys.argv[1], f\"rank{os.environ['RANK']}.pt\"))\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(port), str(script), str(tmp_path),
                          "--config", CONFIG, "--data-root", str(data_root), "--work-dir", str(tmp_path / "wd"),
                          "--device", "cpu", "--iters", "4", "--batch-size", "2", "--workers", "0",
                          "--val-interval", "0"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    model = emaseg.build_model(emaseg.get_config(CONFIG))
    params = {name for name, _ in model.named_parameters()}
    assert_same({k: rank0[k] for k in params}, {k: rank1[k] for k in params})
    assert torch.equal(rank0["decode_head.ema_module.bases"], rank1["decode_head.ema_module.bases"])
    # Trained: the weights moved from the (shared) initialisation.
    torch.manual_seed(0)
    init = emaseg.build_model(emaseg.get_config(CONFIG)).state_dict()
    assert not torch.equal(init["decode_head.conv_seg.weight"], rank0["decode_head.conv_seg.weight"])
    # Rank 0 alone writes the files; its latest.pth holds both ranks' RNG states.
    state = load_checkpoint(tmp_path / "wd" / "latest.pth")
    assert len(state["train_state"]["rng"]) == 2
    assert_same({k: state["state_dict"][k] for k in params}, {k: rank0[k] for k in params})


def test_load_from_backbone_only_and_wrappers(tmp_path):
    cfg = emaseg.get_config(CONFIG)
    donor = emaseg.build_model(cfg)
    bare = {k: v.clone() + 1 for k, v in donor.backbone.state_dict().items()}
    bare["fc.weight"] = torch.zeros(10, 8)  # an ImageNet classifier: reported, ignored
    for name, obj in {"bare": bare,
                      "prefixed": {"state_dict": {f"backbone.{k}": v for k, v in bare.items()}, "meta": {}}}.items():
        path = tmp_path / f"{name}.pth"
        torch.save(obj, path)
        model = emaseg.build_model(cfg)
        report = load_pretrained(model, str(path))
        n_backbone = len(donor.backbone.state_dict())
        assert report[0] == f"loaded {n_backbone} of {len(model.state_dict())} model tensors from {path}"
        assert any("keep their initialisation" in line and "decode_head" in line for line in report)
        assert any("ignored: 1: backbone.fc (1)" in line for line in report)
        assert torch.equal(model.backbone.stem[0].weight, bare["stem.0.weight"])


def test_load_from_other_num_classes_skips_classifier(tmp_path):
    cfg = emaseg.get_config(CONFIG)
    source = emaseg.build_model(cfg.override(["model.num_classes=21"]))
    path = tmp_path / "voc.pth"
    emaseg.save_checkpoint(path, source, cfg.override(["model.num_classes=21"]))
    model = emaseg.build_model(cfg)
    report = load_pretrained(model, str(path))
    assert any("shape differs, skipped: decode_head.conv_seg.weight file (21, 32, 1, 1) vs model (19, 32, 1, 1)"
               in line for line in report), report
    assert torch.equal(model.backbone.stem[0].weight, source.backbone.stem[0].weight)


def test_load_from_unrelated_file_fails(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, path)
    with pytest.raises(PretrainedError, match="none of its 1 tensors fits the model"):
        load_pretrained(emaseg.build_model(emaseg.get_config(CONFIG)), str(path))


def test_clear_errors(data_root, tmp_path):
    with pytest.raises(DatasetError, match="data root .*nowhere does not exist"):
        run(tmp_path / "nowhere", tmp_path / "wd")
    with pytest.raises(train.TrainingError, match=r"has 19 classes but config .* has 5: add --set model.num_classes=19"):
        run(data_root, tmp_path / "wd", "--set", "model.num_classes=5")
    with pytest.raises(train.TrainingError, match="has no training state"):
        emaseg.save_checkpoint(tmp_path / "model.pth", emaseg.build_model(emaseg.get_config(CONFIG)),
                               emaseg.get_config(CONFIG))
        run(data_root, tmp_path / "wd", "--resume", str(tmp_path / "model.pth"))


def test_poly_lr_equals_mmengine_chained_form():
    from emaseg.training.schedule import poly_lr

    base, eta_min, total, power = 0.01, 1e-4, 81, 0.9
    # mmengine PolyLR(end=total): its total_iters is end - begin - 1, one multiplicative update
    # per finished iteration.
    mm_total = total - 1
    lr, chained = base, [base]
    for step in range(1, total):
        lr = (lr - eta_min) * (1 - 1 / (mm_total - step + 1)) ** power + eta_min
        chained.append(lr)
    closed = [poly_lr(i, base_lr=base, total_iters=total, power=power, min_lr=eta_min) for i in range(total)]
    assert closed == pytest.approx(chained, rel=1e-9, abs=1e-15)

    def formula(i: int) -> float:  # the closed form with mmengine's denominator, total - 1
        return eta_min + (base - eta_min) * (1 - i / (total - 1)) ** power

    for i in (0, 40, total - 1):  # first, middle (progress exactly 0.5), last
        assert poly_lr(i, base_lr=base, total_iters=total, power=power, min_lr=eta_min) == pytest.approx(formula(i))
    assert closed[0] == base and closed[-1] == pytest.approx(eta_min)
    assert closed[40] == pytest.approx(1e-4 + (0.01 - 1e-4) * 0.5 ** 0.9)


def test_flags_and_set_are_one_override_list(capsys):
    """--iters & co. are short for one --set assignment each; all apply in command-line order."""
    def parse(*extra: str):
        return train.get_args_parser().parse_args(["--config", CONFIG, "--data-root", "x", *extra])

    args = parse("--iters", "5", "--set", "schedule.iters=7", "schedule.lr=0.5", "--batch-size", "3")
    assert args.set == ["schedule.iters=5", "schedule.iters=7", "schedule.lr=0.5", "schedule.batch_size=3"]
    cfg = train.build_config(CONFIG, args.set)
    assert (cfg.schedule.iters, cfg.schedule.lr, cfg.schedule.batch_size) == (7, 0.5, 3)
    assert train.build_config(CONFIG, parse("--set", "schedule.iters=7", "--iters", "5").set).schedule.iters == 5
    with pytest.raises(SystemExit):  # the shortcut's bound is checked while parsing
        parse("--iters", "0")
    assert "--iters: must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="must be positive"):  # --set gets the config's own check
        train.build_config(CONFIG, parse("--set", "schedule.iters=0").set)
    with pytest.raises(SystemExit):
        parse("--stop-at", "0")
    assert "--stop-at: must be at least 1, got 0" in capsys.readouterr().err
    help_text = train.get_args_parser().format_help()
    assert all(name in help_text for name in emaseg.CONFIGS) and "= --set schedule.iters=N" in help_text


def test_resume_helpers(tmp_path):
    from emaseg.training.errors import TrainingError
    from emaseg.training.resume import check_load_from, find_resume, prepare_work_dir

    said: list[str] = []
    cfg = emaseg.get_config(CONFIG)
    work = prepare_work_dir(tmp_path / "a" / "b")
    assert work.is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(TrainingError, match="is a file, not a folder"):
        prepare_work_dir(tmp_path / "file")
    assert find_resume(None, work, cfg, 0, said.append) is None and said == []
    assert find_resume("auto", work, cfg, 0, said.append) is None
    assert said == [f"--resume auto: no {work / 'latest.pth'}, starting from scratch"]
    emaseg.save_checkpoint(work / "best.pth", emaseg.build_model(cfg), cfg)
    with pytest.raises(TrainingError, match="has no training state"):
        find_resume(str(work / "best.pth"), work, cfg, 0, said.append)
    with pytest.raises(TrainingError, match="which training overwrites"):
        check_load_from(str(work / "best.pth"), work, resuming=False)
    check_load_from(str(work / "best.pth"), work, resuming=True)   # resuming restores, never overwrites first


def test_train_step_stops_before_touching_weights_on_nan(data_root):
    from emaseg.training.errors import NonFiniteLoss
    from emaseg.training.loop import TrainStep

    cfg = emaseg.get_config(CONFIG)
    model = emaseg.build_model(cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.schedule.lr, momentum=0.9)
    images = torch.randint(0, 256, (2, 64, 128, 3), dtype=torch.uint8)   # NHWC uint8, as loaded
    labels = torch.randint(0, 19, (2, 64, 128))
    broken = TrainStep(model.train(), optimizer, cfg.override(["data.std=[0,0,0]"]), torch.device("cpu"))
    # Parameters only: buffers (BN statistics, the EMA bases) move in any training forward pass.
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    with pytest.raises(NonFiniteLoss, match="at iteration 4"):   # std 0: inf inputs, NaN loss
        broken(3, images, labels)
    after = dict(model.named_parameters())
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert optimizer.param_groups[0]["lr"] == broken.lr(3) < cfg.schedule.lr
    model.load_state_dict(emaseg.build_model(cfg).state_dict())   # the NaN pass left NaN EMA bases
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    values = TrainStep(model, optimizer, cfg, torch.device("cpu"))(0, images, labels)
    assert values.shape == (3,) and torch.isfinite(values).all()
    assert any(not torch.equal(v, after[k]) for k, v in before.items())


def test_latest_checkpoint_resumes_with_its_state(tmp_path):
    """save_latest writes what find_resume reads back: iteration, seed, best mIoU, optimizer."""
    from types import SimpleNamespace

    from emaseg.training.resume import find_resume, save_latest

    cfg = emaseg.get_config(CONFIG)
    model = emaseg.build_model(cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    dataset = SimpleNamespace(classes=[f"c{i}" for i in range(19)], palette=[[i, i, i] for i in range(19)])
    save_latest(tmp_path / "latest.pth", model, cfg, dataset, iteration=3, seed=5, optimizer=optimizer, scaler=None,
                best_miou=41.5, main_process=True)
    said: list[str] = []
    point = find_resume("auto", tmp_path, cfg.override(["schedule.lr=0.5"]), 0, said.append)
    assert (point.path, point.iteration, point.seed, point.best_miou) == (tmp_path / "latest.pth", 3, 5, 41.5)
    assert said == [f"warning: the config differs from the one {tmp_path / 'latest.pth'} was trained with: "
                    f"schedule.lr: 0.01 -> 0.5", "resuming with the run's seed 5 (not --seed 0)"]
    restored = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    point.restore_optimizer(restored, None)
    assert restored.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]


def test_bf16_on_the_cpu_trains_and_resumes_bit_exact(data_root, tmp_path):
    """--amp bf16 with --device cpu (CPU autocast): finite losses, a usable model, and the same
    split-and-resume exactness as float32; fp16 stays CUDA-only with a clear error."""
    run(data_root, tmp_path / "straight", "--amp", "bf16")
    run(data_root, tmp_path / "split", "--amp", "bf16", "--stop-at", "3")
    run(data_root, tmp_path / "split", "--amp", "bf16", "--resume", "auto")
    assert_same(weights(tmp_path / "straight" / "latest.pth"), weights(tmp_path / "split" / "latest.pth"))
    records = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert records[0]["amp"] == "bf16" and all(torch.isfinite(torch.tensor(r["loss"])) for r in records
                                               if r["type"] == "train")
    fp32 = run(data_root, tmp_path / "fp32")
    # bf16 autocast really ran: the weights moved differently from the float32 run's.
    assert any(not torch.equal(a, b) for a, b in zip(weights(tmp_path / "fp32" / "latest.pth").values(),
                                                      weights(tmp_path / "straight" / "latest.pth").values()))
    assert fp32 is not None
    out = subprocess.run([sys.executable, str(ROOT / "python" / "train.py"), "--config", CONFIG, "--data-root",
                          str(data_root), "--work-dir", str(tmp_path / "fp16"), "--device", "cpu", "--amp", "fp16"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 1 and "--amp fp16 needs --device cuda" in out.stderr and "Traceback" not in out.stderr


def test_class_weights_ohem_and_rare_class_sampling_train_and_resume(data_root, tmp_path):
    """The three options together through train.py: the run resumes bit-exact (the rare-class
    draws are seeded by position, like the augmentation) and the options are in config.json."""
    options = ["--set", "loss.class_weight=" + json.dumps([1.0 + i / 10 for i in range(19)]), "loss.ohem=true",
               "loss.ohem_thresh=0.7", "loss.ohem_min_kept=500", "data.rare_class_sampling=true",
               "data.rcs_min_pixels=10"]
    run(data_root, tmp_path / "straight", *options)
    run(data_root, tmp_path / "split", *options, "--stop-at", "3")
    run(data_root, tmp_path / "split", *options, "--resume", "auto")
    assert_same(weights(tmp_path / "straight" / "latest.pth"), weights(tmp_path / "split" / "latest.pth"))
    saved = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert saved["loss"]["ohem"] is True and saved["data"]["rare_class_sampling"] is True
    assert len(saved["loss"]["class_weight"]) == 19


@pytest.mark.parametrize("setting, message", [
    ("loss.class_weight=[1,2]", "loss.class_weight needs 19 weights"),
    ("loss.ohem_min_kept=0", "OHEM needs loss.ohem_min_kept > 0"),
    ("data.rcs_temperature=0", "rare-class sampling needs data.rcs_temperature > 0"),
])
def test_bad_loss_and_sampling_options_are_clear_errors(data_root, tmp_path, setting, message):
    extra = {"loss.ohem_min_kept=0": ["loss.ohem=true"], "data.rcs_temperature=0": ["data.rare_class_sampling=true"]}
    out = subprocess.run([sys.executable, str(ROOT / "python" / "train.py"), "--config", CONFIG, "--data-root",
                          str(data_root), "--work-dir", str(tmp_path), "--device", "cpu",
                          "--set", setting, *extra.get(setting, [])],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 1 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
