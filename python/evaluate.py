"""Score a trained model on a dataset split: mIoU, per-class IoU/Acc, aAcc (mmseg's IoUMetric).

    python python/evaluate.py --checkpoint work_dirs/NAME/best.pth --data-root data/cityscapes
    python python/evaluate.py --checkpoint ckpt.pth --data-root data/cityscapes --aug-test      # ms + flip
    python python/evaluate.py --model models/NAME.pt --data-root data/cityscapes               # exported file
    torchrun --nproc_per_node 4 python/evaluate.py --checkpoint ckpt.pth --data-root ...       # sharded

`--checkpoint` rebuilds the model from our checkpoint; its stored config gives the test
settings (whole/slide, test scale, TTA ratios) unless `--config`/`--mode`/`--set` say otherwise.
`--model` scores an exported file (.pt, .pt2 including int8, or .onnx through ONNX Runtime) as a
black box on the raw images (its test settings are baked in), which proves the artifact that
will be deployed.

Exit status: 0 scored; 1 error (one line on stderr): a missing or bad model/data file, a `--json`
path that cannot be written (checked before evaluating; if writing still fails at the end, the
results are printed to stdout first), no labelled pixel to score; 2 bad flags; 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from emaseg.atomic import WriteError, check_output, write_atomic
from emaseg.cli import int_at_least, run_tool
from emaseg.checkpoint import CheckpointError, load_checkpoint, load_model
from emaseg.export import ExportedFileError, ExportError, load_exported
from emaseg.config import Config, get_config
from emaseg.data.datasets import DatasetError, build_dataset
from emaseg.data.loader import error_message, eval_loader
from emaseg.evaluation import evaluate, model_predictor, scripted_predictor
from emaseg.training import distributed as dist_utils


class EvaluationError(RuntimeError):
    """Nothing meaningful to report (e.g. no labelled pixel); the message says why."""


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Evaluate a segmentation model (mIoU)", add_help=add_help)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="an emaseg checkpoint (.pth)")
    source.add_argument("--model", help="an exported model file: .pt, .pt2 or .onnx")
    p.add_argument("--data-root", required=True, help="dataset root (layout per cfg.data.dataset)")
    p.add_argument("--config", default=None, help="take data and test settings from this named config "
                   "(default: the checkpoint's own; for --model: the one it was exported from)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides, e.g. data.dataset=folder")
    p.add_argument("--split", default="val")
    p.add_argument("--mode", choices=["whole", "slide"], default=None, help="inference mode (default: the config's)")
    p.add_argument("--aug-test", action="store_true", help="multi-scale (test.aug_ratios) + flip averaging")
    p.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda if available")
    p.add_argument("--workers", type=int_at_least(0), default=2, help="data loader processes")
    p.add_argument("--max-images", type=int_at_least(1), default=None, help="score only the first N images")
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
    return p


def main(args: argparse.Namespace) -> dict:
    if args.json:  # a run can take hours: a result that cannot be saved is refused up front
        check_output(args.json, inputs=[args.checkpoint, args.model])
    device_kind = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but no CUDA device is available")
    distributed, rank, world_size, local_rank = dist_utils.init_distributed(device_kind)
    device = torch.device("cuda", local_rank) if device_kind == "cuda" else torch.device("cpu")

    if args.checkpoint:
        cfg = Config.from_dict(load_checkpoint(args.checkpoint)["config"])
        if args.config:  # its data/test sections; the model section stays the checkpoint's
            named = get_config(args.config)
            cfg.data, cfg.test = named.data, named.test
        cfg = cfg.override(args.set)
        if args.mode:
            cfg.test.mode = args.mode
        model = load_model(args.checkpoint, device)
        predict = model_predictor(model, cfg, aug_test=args.aug_test)
        num_classes, source = cfg.model.num_classes, args.checkpoint
    else:
        if args.mode or args.aug_test:
            raise ValueError("--mode/--aug-test do not apply to --model: the exported file has its test "
                             "settings built in (export again to change them)")
        if Path(args.model).is_dir():
            raise CheckpointError(f"{args.model}: is a folder, expected an exported model file")
        if not Path(args.model).is_file():
            raise CheckpointError(f"{args.model}: no such file")
        try:  # .pt, .pt2 or .onnx, told apart by content; the metadata is checked
            module, meta = load_exported(args.model, str(device))
        except (ExportedFileError, ExportError) as e:
            raise CheckpointError(str(e)) from e
        except (RuntimeError, ImportError) as e:
            raise CheckpointError(f"{args.model}: cannot be loaded here: {str(e).strip().splitlines()[0]}") from e
        name = args.config or meta.get("config_name")
        if not name:
            raise ValueError(f"{args.model} names no config in its metadata: pass --config")
        cfg = get_config(name).override(args.set)
        predict = scripted_predictor(module, batch=1 if (meta.get("fixed_input") or {}).get("N") == 1 else None)
        num_classes, source = int(meta.get("num_classes", cfg.model.num_classes)), args.model

    dataset = build_dataset(cfg.data, args.data_root, args.split, train=False)
    if dataset.num_classes != num_classes:
        raise DatasetError(f"the {cfg.data.dataset} dataset has {dataset.num_classes} classes but the model "
                           f"predicts {num_classes}")
    batches = eval_loader(dataset, num_workers=args.workers, rank=rank, world_size=world_size,
                          pin_memory=device.type == "cuda", max_images=args.max_images)
    matrix = evaluate(predict, batches, num_classes=num_classes, ignore_index=dataset.ignore_index,
                      device=device, desc=f"{args.split}")
    result = matrix.compute()
    if not math.isfinite(result["mIoU"]):  # NaN: not one labelled pixel was scored
        raise EvaluationError(f"no labelled pixel in the {args.split} images scored (all ignore_index "
                              f"{dataset.ignore_index}?): the metrics are undefined")
    n_images = len(dataset) if args.max_images is None else min(args.max_images, len(dataset))
    report = {
        "source": str(source), "config": cfg.name, "dataset": cfg.data.dataset, "split": args.split,
        "images": n_images, "mode": "exported" if args.model else cfg.test.mode, "aug_test": args.aug_test,
        "mIoU": result["mIoU"], "mAcc": result["mAcc"], "aAcc": result["aAcc"],
        "per_class": {name: {"IoU": iou, "Acc": acc}
                      for name, iou, acc in zip(dataset.classes, result["IoU"], result["Acc"])},
    }
    if rank == 0:
        print(matrix.table(dataset.classes))
        print(f"mIoU: {result['mIoU']:.2f}  aAcc: {result['aAcc']:.2f}  mAcc: {result['mAcc']:.2f}  "
              f"({n_images} images, {args.split})")
        if args.json:
            text = json.dumps(_finite(report), indent=2)
            try:
                write_atomic(args.json, text + "\n")
            except WriteError:
                print(text)  # the results, not lost; the error follows on stderr
                raise
    dist_utils.cleanup()
    return report


def _finite(value):
    """NaN (a class absent from labels and predictions) as JSON null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


if __name__ == "__main__":
    sys.exit(run_tool("evaluate", lambda: main(get_args_parser().parse_args()), describe=error_message,
                      errors=(DatasetError, CheckpointError, EvaluationError, ValueError, OSError),
                      cleanup=dist_utils.cleanup))
