"""Train EMANet with the reference recipe (mmsegmentation 1.2.2, spec section 7).

    python python/train.py --config emanet_r50-d8_512x1024_80k_cityscapes --data-root data/cityscapes
    torchrun --nproc_per_node 4 python/train.py --config ... --data-root ...      # 4 GPUs x batch 2
    python python/train.py --config emanet_r18w8-d8_128x256_synthetic --data-root data/synth --device cpu

Iteration-based: SGD (momentum, weight decay on every trainable parameter), poly LR set every
iteration, CE (decode) + 0.4 CE (aux). `--batch-size` is per process. The work dir receives
`log.jsonl`, `curves.png`, `config.json`, `latest.pth` (model + resume state) and `best.pth`
(best validation mIoU), both in the emaseg checkpoint format and written atomically.

Exit status: 0 done; 1 error (one line on stderr: bad data, checkpoint or --work-dir, a NaN loss,
a file that cannot be written such as a full disk; the checkpoints already in the work dir stay
complete); 2 bad flags; 130 interrupted.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

import emaseg
from emaseg.atomic import same_file, write_atomic
from emaseg.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from emaseg.config import Config, config_differences, get_config
from emaseg.data.datasets import DatasetError, build_dataset
from emaseg.data.loader import error_message, eval_loader, train_batches
from emaseg.evaluation import evaluate, model_predictor
from emaseg.inference import preprocess
from emaseg.losses import segmentation_loss
from emaseg.training import distributed as dist_utils
from emaseg.training.logging import JsonlLog, plot_curves
from emaseg.training.pretrained import PretrainedError, load_pretrained
from emaseg.training.schedule import poly_lr, set_lr
from emaseg.training.state import gather_rng, restore_rng_for_rank, train_state


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what was kept."""


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    from emaseg.config import CONFIGS

    names = "\n".join(f"  {name}" for name in CONFIGS)
    p = argparse.ArgumentParser(description="Train EMANet", add_help=add_help,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"named configurations (--config):\n{names}")
    p.add_argument("--config", required=True, choices=sorted(CONFIGS), metavar="NAME",
                   help="named configuration (listed below)")
    p.add_argument("--data-root", required=True, help="dataset root (layout per cfg.data.dataset)")
    p.add_argument("--work-dir", default=None, help="outputs; default work_dirs/<config name>")
    p.add_argument("--iters", type=int, default=None, help="total iterations (schedule.iters)")
    p.add_argument("--batch-size", type=int, default=None, help="per process (schedule.batch_size)")
    p.add_argument("--workers", type=int, default=None, help="data loader processes (data.num_workers)")
    p.add_argument("--val-interval", type=int, default=None, help="validate every N iterations, 0: never "
                   "(schedule.val_interval); also validates at the end")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides, e.g. schedule.lr=0.02")
    p.add_argument("--resume", default=None, metavar="PATH|auto",
                   help="continue a run from its latest.pth (auto: work_dir/latest.pth if it exists)")
    p.add_argument("--load-from", default=None, metavar="CKPT",
                   help="initial weights: an emaseg checkpoint or ResNetV1c backbone weights")
    p.add_argument("--device", default=None, choices=["cuda", "cpu"], help="default: cuda if available")
    p.add_argument("--amp", default=None, choices=["bf16", "fp16"], help="mixed precision (CUDA only)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training model")
    p.add_argument("--seed", type=int, default=0, help="fixes init, data order and augmentation")
    p.add_argument("--stop-at", type=int, default=None, metavar="ITER",
                   help="stop after this iteration (saving latest.pth) though the schedule runs to --iters; "
                        "for time-limited jobs, continue with --resume auto")
    return p


def build_config(name: str, overrides: list[str], *, iters: int | None, batch_size: int | None,
                 workers: int | None, val_interval: int | None) -> Config:
    """The named config with `--set` overrides, then the dedicated flags on top."""
    cfg = get_config(name).override(overrides)
    if iters is not None:
        cfg.schedule.iters = iters
    if batch_size is not None:
        cfg.schedule.batch_size = batch_size
    if workers is not None:
        cfg.data.num_workers = workers
    if val_interval is not None:
        cfg.schedule.val_interval = val_interval
    if cfg.schedule.iters <= 0 or cfg.schedule.batch_size <= 0:
        raise ValueError("iters and batch size must be positive")
    return cfg


# ----------------------------------------------------------------------------- training

class NonFiniteLoss(ArithmeticError):
    def __init__(self, iteration: int, value: float) -> None:
        super().__init__(f"loss is {value} at iteration {iteration}")
        self.iteration = iteration
        self.value = value


def train_one_interval(model: nn.Module, criterion, optimizer: torch.optim.Optimizer, batches, *,
                       device: torch.device, start_iter: int, stop_iter: int, lr_at, normalize,
                       autocast_dtype: torch.dtype | None, scaler: torch.amp.GradScaler | None,
                       log: JsonlLog | None, bar: tqdm | None, log_interval: int) -> None:
    """Iterations start_iter .. stop_iter - 1 (the iteration-based counterpart of an epoch).

    The loss is averaged over processes every iteration and checked before the backward pass:
    a NaN/inf stops every rank at once, before any weight is touched.
    """
    model.train()
    sums = torch.zeros(3, dtype=torch.float64)
    count, data_time, step_time = 0, 0.0, 0.0
    tick = time.perf_counter()
    for it in range(start_iter, stop_iter):
        images, labels = next(batches)
        data_time += time.perf_counter() - tick
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        lr = lr_at(it)
        set_lr(optimizer, lr)
        with (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()):
            outputs = model(normalize(images))
            loss, parts = criterion(outputs, labels)
        values = torch.stack([loss.detach().float(), parts["decode"].float(),
                              parts.get("aux", torch.zeros((), device=loss.device)).float()])
        values = dist_utils.mean_over_processes(values).cpu().double()
        if not math.isfinite(values[0].item()):
            raise NonFiniteLoss(it + 1, values[0].item())
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        sums += values
        count += 1
        now = time.perf_counter()
        step_time += now - tick
        tick = now
        if bar is not None:
            bar.set_postfix(loss=f"{values[0].item():.4f}", lr=f"{lr:.2e}", refresh=False)
            bar.update(1)
        if log is not None and ((it + 1) % log_interval == 0 or it + 1 == stop_iter):
            mean = (sums / count).tolist()
            record = {"type": "train", "iter": it + 1, "loss": mean[0], "decode_loss": mean[1],
                      "aux_loss": mean[2], "lr": lr, "time": step_time / count, "data_time": data_time / count}
            if device.type == "cuda":
                record["mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
            log.write(record)
            sums.zero_()
            count, data_time, step_time = 0, 0.0, 0.0


def prepare_work_dir(work_dir: Path) -> Path:
    """Creates the work dir; a path that is a file, or a folder that cannot be made, is a
    TrainingError (one line) rather than an OSError traceback."""
    if work_dir.exists() and not work_dir.is_dir():
        raise TrainingError(f"--work-dir {work_dir} is a file, not a folder: choose another --work-dir")
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrainingError(f"cannot create --work-dir {work_dir}: {e.strerror or e}") from e
    if not os.access(work_dir, os.W_OK | os.X_OK):
        raise TrainingError(f"--work-dir {work_dir} is not writable")
    return work_dir


def check_load_from(load_from: str | None, work_dir: Path, resuming: bool) -> None:
    """A fresh run rewrites latest.pth and best.pth: refuse to start from one of them, which the
    run would overwrite (resuming from latest.pth is the intended exception)."""
    if not load_from or resuming:
        return
    for name in ("latest.pth", "best.pth"):
        if (work_dir / name).exists() and same_file(load_from, work_dir / name):
            raise TrainingError(f"--load-from {load_from} is this run's {work_dir / name}, which training "
                                f"overwrites: copy it elsewhere first, pick another --work-dir, or --resume")


def find_resume(resume: str | None, work_dir: Path, say) -> Path | None:
    """--resume PATH, or with "auto" work_dir/latest.pth when it exists (a fresh start otherwise)."""
    if resume != "auto":
        return Path(resume) if resume else None
    if (work_dir / "latest.pth").is_file():
        return work_dir / "latest.pth"
    say(f"--resume auto: no {work_dir / 'latest.pth'}, starting from scratch")
    return None


def save_latest(path: Path, model: nn.Module, cfg: Config, dataset, *, iteration: int, seed: int,
                optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None, best_miou: float | None,
                main_process: bool) -> None:
    rng = gather_rng()  # collective: every rank's RNG goes into the file
    if main_process:
        state = train_state(iteration=iteration, seed=seed, optimizer=optimizer, scaler=scaler,
                            best_miou=best_miou, rng=rng)
        save_checkpoint(path, model, cfg, class_names=dataset.classes, palette=dataset.palette,
                        extra={"train_state": state})


def main(args: argparse.Namespace) -> nn.Module:
    """The whole recipe; returns the trained (unwrapped) model."""
    cfg = build_config(args.config, args.set, iters=args.iters, batch_size=args.batch_size,
                       workers=args.workers, val_interval=args.val_interval)
    device_kind = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_kind == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda but no CUDA device is available")
    if args.amp and device_kind != "cuda":
        raise TrainingError("--amp needs --device cuda")
    distributed, rank, world_size, local_rank = dist_utils.init_distributed(device_kind)
    device = torch.device("cuda", local_rank) if device_kind == "cuda" else torch.device("cpu")
    main_process = rank == 0
    work_dir = prepare_work_dir(Path(args.work_dir or Path("work_dirs") / cfg.name))
    say = tqdm.write if main_process else (lambda *a, **k: None)

    # Resume: the state decides the start point and the seed (the data stream is a function of it).
    resume_path = find_resume(args.resume, work_dir, say)
    check_load_from(args.load_from, work_dir, resuming=resume_path is not None)
    resume, seed, start_iter, best_miou = None, args.seed, 0, None
    if resume_path is not None:
        resume = load_checkpoint(resume_path)
        if "train_state" not in resume:
            raise TrainingError(f"{resume_path} has no training state (a model file such as best.pth?); "
                                f"use --load-from to start from its weights")
        diffs = config_differences(resume["config"], cfg.to_dict())
        if diffs:
            say(f"warning: the config differs from the one {resume_path} was trained with: {'; '.join(diffs)}")
        state = resume["train_state"]
        if state["seed"] != seed:
            say(f"resuming with the run's seed {state['seed']} (not --seed {seed})")
        seed, start_iter, best_miou = state["seed"], state["iteration"], state["best_miou"]
    total = cfg.schedule.iters
    end_iter = min(total, args.stop_at) if args.stop_at is not None else total
    if start_iter >= end_iter:
        say(f"nothing to do: {resume_path} is at iteration {start_iter}, the target is {end_iter}")
        dist_utils.cleanup()
        return emaseg.load_model(resume_path)

    torch.manual_seed(seed + rank)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    train_set = build_dataset(cfg.data, args.data_root, "train", train=True)
    if train_set.num_classes != cfg.model.num_classes:
        raise TrainingError(f"the {cfg.data.dataset} dataset has {train_set.num_classes} classes but config "
                            f"{cfg.name} has {cfg.model.num_classes}: add --set model.num_classes={train_set.num_classes}")
    val_set = None
    if cfg.schedule.val_interval > 0:
        try:
            val_set = build_dataset(cfg.data, args.data_root, "val", train=False)
        except DatasetError as e:
            raise DatasetError(f"{e} (validation split; --val-interval 0 trains without validation)") from e

    model = emaseg.build_model(cfg)
    if args.load_from and resume is None:
        try:
            report = load_pretrained(model, args.load_from)
        except PretrainedError as e:
            raise TrainingError(str(e)) from e
        for line in report:
            say(line)
    elif args.load_from:
        say("--load-from ignored: resuming restores the weights")
    if resume is not None:
        model.load_state_dict(resume["state_dict"])
    if distributed and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model_without_ddp = model

    # Every trainable parameter, BN and biases included, gets the same weight decay (the
    # reference has no paramwise config); the frozen ema_mid_conv is not optimised at all.
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.schedule.lr, momentum=cfg.schedule.momentum,
                                weight_decay=cfg.schedule.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if args.amp == "fp16" else None
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, None: None}[args.amp]
    if resume is not None:
        optimizer.load_state_dict(resume["train_state"]["optimizer"])
        if scaler is not None and resume["train_state"]["scaler"] is not None:
            scaler.load_state_dict(resume["train_state"]["scaler"])

    if distributed:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    train_model = torch.compile(model) if args.compile else model

    batches = train_batches(train_set, batch_size=cfg.schedule.batch_size, num_workers=cfg.data.num_workers,
                            seed=seed, start_iter=start_iter, rank=rank, world_size=world_size,
                            pin_memory=device.type == "cuda")
    val_batches = None
    if val_set is not None:
        val_batches = eval_loader(val_set, num_workers=cfg.data.num_workers, rank=rank, world_size=world_size,
                                  pin_memory=device.type == "cuda")
    mean = torch.tensor(cfg.data.mean, device=device)
    std = torch.tensor(cfg.data.std, device=device)

    def normalize(images: torch.Tensor) -> torch.Tensor:
        x = preprocess(images, mean, std, cfg.data.bgr_to_rgb)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    def lr_at(it: int) -> float:
        return poly_lr(it, base_lr=cfg.schedule.lr, total_iters=total, power=cfg.schedule.poly_power,
                       min_lr=cfg.schedule.min_lr)

    def criterion(outputs, labels):
        return segmentation_loss(outputs, labels, align_corners=cfg.model.align_corners,
                                 aux_weight=cfg.schedule.aux_weight, ignore_index=cfg.data.ignore_index)

    log = None
    if main_process:
        write_atomic(work_dir / "config.json", cfg.to_json())
        log = JsonlLog(work_dir / "log.jsonl", resume_iter=start_iter if resume is not None else None)
        log.write({"type": "start", "iter": start_iter, "config": cfg.name, "world_size": world_size,
                   "batch_size": cfg.schedule.batch_size, "device": str(device), "amp": args.amp, "seed": seed,
                   "train_images": len(train_set), "val_images": len(val_set) if val_set is not None else 0})
    if resume is not None:
        say(f"resumed from {resume_path} at iteration {start_iter}")
        # Last, so that nothing above consumes random numbers the straight run did not.
        if not restore_rng_for_rank(resume["train_state"]["rng"], rank, world_size):
            say("warning: the world size changed since the checkpoint; RNG states restored from rank 0")
        del resume

    latest, best = work_dir / "latest.pth", work_dir / "best.pth"
    saved_iter = start_iter if resume_path is not None else None
    val_every, ckpt_every = cfg.schedule.val_interval, cfg.schedule.checkpoint_interval
    stops = {end_iter}
    for every in (val_every, ckpt_every):
        if every > 0:
            stops.update(range(every, end_iter, every))
    bar = tqdm(total=total, initial=start_iter, desc="train", dynamic_ncols=True) if main_process else None
    peak_mem = 0.0
    it = start_iter
    try:
        for stop in sorted(s for s in stops if s > start_iter):
            try:
                train_one_interval(train_model, criterion, optimizer, batches, device=device, start_iter=it,
                                   stop_iter=stop, lr_at=lr_at, normalize=normalize, autocast_dtype=autocast_dtype,
                                   scaler=scaler, log=log, bar=bar, log_interval=cfg.schedule.log_interval)
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
                matrix = evaluate(model_predictor(model_without_ddp.eval(), cfg), val_batches,
                                  num_classes=val_set.num_classes, ignore_index=val_set.ignore_index,
                                  device=device, desc=f"val @ {it}")
                result = matrix.compute()
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)  # the Mem column is training memory
                if log is not None:
                    log.write({"type": "val", "iter": it, "mIoU": result["mIoU"], "mAcc": result["mAcc"],
                               "aAcc": result["aAcc"],
                               "IoU": dict(zip(val_set.classes, [round(v, 4) for v in result["IoU"]]))})
                say(f"iter {it}: mIoU {result['mIoU']:.2f}  aAcc {result['aAcc']:.2f}  mAcc {result['mAcc']:.2f}")
                if math.isfinite(result["mIoU"]) and (best_miou is None or result["mIoU"] > best_miou):
                    best_miou = result["mIoU"]
                    if main_process:
                        save_checkpoint(best, model_without_ddp, cfg, class_names=val_set.classes,
                                        palette=val_set.palette, extra={"iteration": it, "mIoU": best_miou})
                        say(f"new best mIoU {best_miou:.2f}: {best}")
            if it == end_iter or (ckpt_every > 0 and it % ckpt_every == 0):
                save_latest(latest, model_without_ddp, cfg, train_set, iteration=it, seed=seed,
                            optimizer=optimizer, scaler=scaler, best_miou=best_miou, main_process=main_process)
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
    try:
        main(get_args_parser().parse_args())
    except (TrainingError, DatasetError, CheckpointError, ValueError, OSError) as e:
        print(f"train: error: {error_message(e)}", file=sys.stderr)
        dist_utils.cleanup()
        sys.exit(1)
    except KeyboardInterrupt:
        # Checkpoints are written atomically: whatever latest.pth/best.pth hold is complete.
        print("train: interrupted; the checkpoints in the work dir are the last complete ones", file=sys.stderr)
        dist_utils.cleanup()
        sys.exit(130)
