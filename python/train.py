"""Train EMANet with the reference recipe (mmsegmentation 1.2.2, spec section 7).

    python python/train.py --config emanet_r50-d8_512x1024_80k_cityscapes --data-root data/cityscapes
    torchrun --nproc_per_node 4 python/train.py --config ... --data-root ...      # 4 GPUs x batch 2
    python python/train.py --config emanet_r18w8-d8_128x256_synthetic --data-root data/synth --device cpu

Iteration-based: SGD (momentum, weight decay on every trainable parameter), poly LR set every
iteration, CE (decode) + 0.4 CE (aux) (`emaseg.training.loop`). `--batch-size` is per process. The work dir receives
`log.jsonl`, `curves.png`, `config.json`, `latest.pth` (model + resume state) and `best.pth`
(best validation mIoU), both in the emaseg checkpoint format and written atomically.

Exit status: 0 done; 1 error (one line on stderr: bad data, checkpoint or --work-dir, a NaN loss,
a file that cannot be written such as a full disk; the checkpoints already in the work dir stay
complete); 2 bad flags; 130 interrupted.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

import emaseg
from emaseg.atomic import write_atomic
from emaseg.checkpoint import CheckpointError, save_checkpoint
from emaseg.cli import int_at_least, run_tool
from emaseg.config import CONFIGS, Config, get_config
from emaseg.data.datasets import DatasetError, build_dataset
from emaseg.data.loader import error_message, eval_loader, train_batches
from emaseg.data.rare_class import RareClassTable, class_pixel_counts
from emaseg.evaluation import evaluate, model_predictor
from emaseg.training import distributed as dist_utils
from emaseg.training.errors import NonFiniteLoss, TrainingError
from emaseg.training.logging import JsonlLog, plot_curves
from emaseg.training.loop import TrainStep, train_one_interval
from emaseg.training.pretrained import PretrainedError, load_pretrained
from emaseg.training.resume import ResumePoint, check_load_from, find_resume, prepare_work_dir, save_latest
from emaseg.training.state import restore_rng_for_rank

# Flags that are short for one `--set` assignment: all of them land, in command-line order, in
# the single override list that `Config.override` applies (so a later one wins).
SHORTCUTS = {"--iters": ("schedule.iters", "total iterations", 1),
             "--batch-size": ("schedule.batch_size", "per process", 1),
             "--workers": ("data.num_workers", "data loader processes", 0),
             "--val-interval": ("schedule.val_interval", "validate every N iterations, 0: never; also at the end", 0)}


class _Shortcut(argparse.Action):
    def __init__(self, option_strings, dest, key: str, **kwargs) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.key = key

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        namespace.set = [*namespace.set, f"{self.key}={value}"]


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    names = "\n".join(f"  {name}" for name in CONFIGS)
    p = argparse.ArgumentParser(description="Train EMANet", add_help=add_help,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"named configurations (--config):\n{names}")
    p.add_argument("--config", required=True, choices=sorted(CONFIGS), metavar="NAME",
                   help="named configuration (listed below)")
    p.add_argument("--data-root", required=True, help="dataset root (layout per cfg.data.dataset)")
    p.add_argument("--work-dir", default=None, help="outputs; default work_dirs/<config name>")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. schedule.lr=0.02 (applied in order with the flags below)")
    for flag, (key, what, minimum) in SHORTCUTS.items():
        p.add_argument(flag, type=int_at_least(minimum), action=_Shortcut, key=key, default=argparse.SUPPRESS, metavar="N",
                       help=f"{what} (= --set {key}=N)")
    p.add_argument("--resume", default=None, metavar="PATH|auto",
                   help="continue a run from its latest.pth (auto: work_dir/latest.pth if it exists)")
    p.add_argument("--load-from", default=None, metavar="CKPT",
                   help="initial weights: an emaseg checkpoint or ResNetV1c backbone weights")
    p.add_argument("--device", default=None, choices=["cuda", "cpu"], help="default: cuda if available")
    p.add_argument("--amp", default=None, choices=["bf16", "fp16"],
                   help="mixed precision: bf16 on CUDA or the CPU (autocast), fp16 on CUDA only")
    p.add_argument("--compile", action="store_true", help="torch.compile the training model")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="fixes init, data order and augmentation")
    p.add_argument("--stop-at", type=int_at_least(1), default=None, metavar="ITER",
                   help="stop after this iteration (saving latest.pth) though the schedule runs to --iters; "
                        "for time-limited jobs, continue with --resume auto")
    return p


def build_config(name: str, overrides: list[str]) -> Config:
    cfg = get_config(name).override(overrides)
    if cfg.schedule.iters <= 0 or cfg.schedule.batch_size <= 0:
        raise ValueError("iters and batch size must be positive")
    loss, data = cfg.loss, cfg.data
    if loss.class_weight and (len(loss.class_weight) != cfg.model.num_classes or min(loss.class_weight) < 0):
        raise ValueError(f"loss.class_weight needs {cfg.model.num_classes} weights >= 0 (one per class), "
                         f"got {len(loss.class_weight)}")
    if loss.ohem and (loss.ohem_min_kept <= 0 or (loss.ohem_thresh is not None and not 0 < loss.ohem_thresh <= 1)):
        raise ValueError("OHEM needs loss.ohem_min_kept > 0 and loss.ohem_thresh null or in (0, 1]")
    if data.rare_class_sampling and (data.rcs_temperature <= 0 or data.rcs_min_pixels < 0):
        raise ValueError("rare-class sampling needs data.rcs_temperature > 0 and data.rcs_min_pixels >= 0")
    return cfg


def setup_device(requested: str | None, amp: str | None) -> tuple[torch.device, bool, int, int]:
    """(device, distributed, rank, world size); torchrun's environment decides the last three."""
    kind = requested or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda but no CUDA device is available")
    if amp == "fp16" and kind != "cuda":
        raise TrainingError("--amp fp16 needs --device cuda; the CPU trains in float32 or --amp bf16")
    distributed, rank, world_size, local_rank = dist_utils.init_distributed(kind)
    device = torch.device("cuda", local_rank) if kind == "cuda" else torch.device("cpu")
    return device, distributed, rank, world_size


def load_datasets(cfg: Config, data_root: str):
    """(train set, validation set or None when cfg.schedule.val_interval is 0)."""
    train_set = build_dataset(cfg.data, data_root, "train", train=True)
    if train_set.num_classes != cfg.model.num_classes:
        raise TrainingError(f"the {cfg.data.dataset} dataset has {train_set.num_classes} classes but config "
                            f"{cfg.name} has {cfg.model.num_classes}: add --set model.num_classes={train_set.num_classes}")
    if cfg.schedule.val_interval <= 0:
        return train_set, None
    try:
        return train_set, build_dataset(cfg.data, data_root, "val", train=False)
    except DatasetError as e:
        raise DatasetError(f"{e} (validation split; --val-interval 0 trains without validation)") from e


def initial_model(cfg: Config, load_from: str | None, resume: ResumePoint | None, say) -> nn.Module:
    """A fresh model with the resumed weights, or else the --load-from ones."""
    model = emaseg.build_model(cfg)
    if resume is not None:
        if load_from:
            say("--load-from ignored: resuming restores the weights")
        model.load_state_dict(resume.checkpoint["state_dict"])
    elif load_from:
        try:
            report = load_pretrained(model, load_from)
        except PretrainedError as e:
            raise TrainingError(str(e)) from e
        for line in report:
            say(line)
    return model


def interval_ends(start_iter: int, end_iter: int, val_every: int, ckpt_every: int) -> list[int]:
    """The iterations after which training pauses to validate or save, then `end_iter`."""
    stops = {end_iter}
    for every in (val_every, ckpt_every):
        if every > 0:
            stops.update(range(every, end_iter, every))
    return sorted(s for s in stops if s > start_iter)


def validate(model: nn.Module, cfg: Config, batches, val_set, device: torch.device, it: int,
             log: JsonlLog | None, say) -> float:
    """mIoU on the validation split, logged."""
    result = evaluate(model_predictor(model.eval(), cfg), batches, num_classes=val_set.num_classes,
                      ignore_index=val_set.ignore_index, device=device, desc=f"val @ {it}").compute()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)  # the Mem column is training memory
    if log is not None:
        log.write({"type": "val", "iter": it, "mIoU": result["mIoU"], "mAcc": result["mAcc"], "aAcc": result["aAcc"],
                   "IoU": dict(zip(val_set.classes, [round(v, 4) for v in result["IoU"]]))})
    say(f"iter {it}: mIoU {result['mIoU']:.2f}  aAcc {result['aAcc']:.2f}  mAcc {result['mAcc']:.2f}")
    return result["mIoU"]


def main(args: argparse.Namespace) -> nn.Module:
    """The whole recipe; returns the trained (unwrapped) model."""
    cfg = build_config(args.config, args.set)
    device, distributed, rank, world_size = setup_device(args.device, args.amp)
    main_process = rank == 0
    say = tqdm.write if main_process else (lambda *a, **k: None)
    work_dir = prepare_work_dir(Path(args.work_dir or Path("work_dirs") / cfg.name))
    latest, best = work_dir / "latest.pth", work_dir / "best.pth"

    # Resume: the saved state decides the start point and the seed (the data stream is a function of it).
    resume = find_resume(args.resume, work_dir, cfg, args.seed, say)
    check_load_from(args.load_from, work_dir, resuming=resume is not None)
    seed, start_iter, best_miou = (resume.seed, resume.iteration, resume.best_miou) if resume else (args.seed, 0, None)
    total = cfg.schedule.iters
    end_iter = min(total, args.stop_at) if args.stop_at is not None else total
    if start_iter >= end_iter:
        say(f"nothing to do: {resume.path} is at iteration {start_iter}, the target is {end_iter}")
        dist_utils.cleanup()
        return emaseg.load_model(resume.path)

    torch.manual_seed(seed + rank)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    train_set, val_set = load_datasets(cfg, args.data_root)
    model = initial_model(cfg, args.load_from, resume, say)
    if distributed and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    channels_last = device.type == "cuda"
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    model_without_ddp = model
    # Every trainable parameter, BN and biases included, gets the same weight decay (the
    # reference has no paramwise config); the frozen ema_mid_conv is not optimised at all.
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.schedule.lr,
                                momentum=cfg.schedule.momentum, weight_decay=cfg.schedule.weight_decay)
    if distributed:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    step = TrainStep(torch.compile(model) if args.compile else model, optimizer, cfg, device, amp=args.amp,
                     channels_last=channels_last)
    if resume is not None:
        resume.restore_optimizer(optimizer, step.scaler)

    pin = device.type == "cuda"
    rare_classes = None
    if cfg.data.rare_class_sampling:
        rare_classes = RareClassTable(class_pixel_counts(train_set, train_set.num_classes),
                                      temperature=cfg.data.rcs_temperature, min_pixels=cfg.data.rcs_min_pixels)
        say(rare_classes.summary(train_set.classes))
    batches = train_batches(train_set, batch_size=cfg.schedule.batch_size, num_workers=cfg.data.num_workers,
                            seed=seed, start_iter=start_iter, rank=rank, world_size=world_size, pin_memory=pin,
                            rare_classes=rare_classes)
    val_batches = None if val_set is None else eval_loader(val_set, num_workers=cfg.data.num_workers, rank=rank,
                                                           world_size=world_size, pin_memory=pin)
    log = None
    if main_process:
        write_atomic(work_dir / "config.json", cfg.to_json())
        log = JsonlLog(work_dir / "log.jsonl", resume_iter=start_iter if resume is not None else None)
        log.write({"type": "start", "iter": start_iter, "config": cfg.name, "world_size": world_size,
                   "batch_size": cfg.schedule.batch_size, "device": str(device), "amp": args.amp, "seed": seed,
                   "train_images": len(train_set), "val_images": len(val_set) if val_set is not None else 0})
    saved_iter = None
    if resume is not None:
        say(f"resumed from {resume.path} at iteration {start_iter}")
        # Last, so that nothing above consumes random numbers the straight run did not.
        if not restore_rng_for_rank(resume.state["rng"], rank, world_size):
            say("warning: the world size changed since the checkpoint; RNG states restored from rank 0")
        saved_iter, resume = start_iter, None  # frees the checkpoint's tensors

    val_every, ckpt_every = cfg.schedule.val_interval, cfg.schedule.checkpoint_interval
    bar = tqdm(total=total, initial=start_iter, desc="train", dynamic_ncols=True) if main_process else None
    peak_mem, it = 0.0, start_iter
    try:
        for stop in interval_ends(start_iter, end_iter, val_every, ckpt_every):
            try:
                train_one_interval(step, batches, it, stop, log=log, bar=bar, log_interval=cfg.schedule.log_interval)
            except NonFiniteLoss as e:
                kept = (f"the last good checkpoint {latest} (iteration {saved_iter}) is untouched"
                        if saved_iter is not None else "no checkpoint had been written yet")
                if log is not None:
                    log.write({"type": "error", "iter": e.iteration, "error": str(e)})
                raise TrainingError(f"{e}; training stopped ({kept}). Lower schedule.lr, try without --amp "
                                    f"or check the data") from e
            it = stop
            if device.type == "cuda":
                peak_mem = max(peak_mem, torch.cuda.max_memory_allocated(device) / 2**30)
            if val_batches is not None and (it % val_every == 0 or it == total):
                miou = validate(model_without_ddp, cfg, val_batches, val_set, device, it, log, say)
                if math.isfinite(miou) and (best_miou is None or miou > best_miou):
                    best_miou = miou
                    if main_process:
                        save_checkpoint(best, model_without_ddp, cfg, class_names=val_set.classes,
                                        palette=val_set.palette, extra={"iteration": it, "mIoU": best_miou})
                        say(f"new best mIoU {best_miou:.2f}: {best}")
            if it == end_iter or (ckpt_every > 0 and it % ckpt_every == 0):
                save_latest(latest, model_without_ddp, cfg, train_set, iteration=it, seed=seed, optimizer=optimizer,
                            scaler=step.scaler, best_miou=best_miou, main_process=main_process)
                saved_iter = it
            if main_process and val_batches is not None and it % val_every == 0:
                plot_curves(work_dir / "log.jsonl", work_dir / "curves.png")
    finally:
        if bar is not None:
            bar.close()
        del batches  # stops the loader workers

    if main_process:
        summary = {"type": "summary", "iter": it, "best_mIoU": best_miou}
        if device.type == "cuda":
            summary["peak_mem_gb"] = peak_mem
            say(f"peak training GPU memory (torch.cuda.max_memory_allocated): {peak_mem:.2f} GB")
        log.write(summary)
        plot_curves(work_dir / "log.jsonl", work_dir / "curves.png")
        say(f"done at iteration {it}; latest: {latest}" + (f"; best mIoU {best_miou:.2f}: {best}" if best_miou is not None else ""))
    dist_utils.cleanup()
    return model_without_ddp


if __name__ == "__main__":
    sys.exit(run_tool("train", lambda: main(get_args_parser().parse_args()), describe=error_message,
                      errors=(TrainingError, DatasetError, CheckpointError, ValueError, OSError),
                      # Checkpoints are written atomically: whatever latest.pth/best.pth hold is complete.
                      interrupted="interrupted; the checkpoints in the work dir are the last complete ones",
                      cleanup=dist_utils.cleanup))
