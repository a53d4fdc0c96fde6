"""Scoring a predictor over a dataset: shared by `train.py` (validation) and `evaluate.py`.

A predictor maps raw uint8 BGR images (1, H, W, 3) to labels (1, H, W) at the same size; it
owns the whole test path (test resize, whole/slide inference, optional multi-scale + flip).
Either a model with its config (`model_predictor`) or an exported TorchScript file
(`scripted_predictor`), which is then scored as the black box that will be deployed.
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch
from tqdm import tqdm

from .config import Config
from .metrics import ConfusionMatrix
from .training.distributed import is_main_process

Predictor = Callable[[torch.Tensor], torch.Tensor]


def model_predictor(model: torch.nn.Module, cfg: Config, *, aug_test: bool = False) -> Predictor:
    """Labels from an eval-mode EMANet: `cfg.test` picks whole/slide; `aug_test` adds the
    reference's multi-scale (`cfg.test.aug_ratios`) and flip averaging."""
    from .inference import predict_labels

    ratios = list(cfg.test.aug_ratios) if aug_test else None
    flip = bool(cfg.test.aug_flip) if aug_test else False

    def predict(images: torch.Tensor) -> torch.Tensor:
        return predict_labels(model, images, cfg, aug_ratios=ratios, flip=flip)

    return predict


def scripted_predictor(module: Callable[[torch.Tensor], torch.Tensor], batch: Optional[int] = None) -> Predictor:
    """An exported model (docs/model_file_format.md; emaseg.export.load_exported): uint8 BGR in,
    labels out. `batch=1`: a package compiled for one frame per call gets the images one by one."""

    def predict(images: torch.Tensor) -> torch.Tensor:
        if batch == 1 and images.shape[0] > 1:
            return torch.cat([module(images[i:i + 1]).long() for i in range(images.shape[0])])
        return module(images).long()

    return predict


def evaluate(predict: Predictor, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *, num_classes: int,
             ignore_index: int = 255, device: torch.device | str = "cpu", progress: bool = True,
             desc: str = "evaluate") -> ConfusionMatrix:
    """Runs `predict` over `batches` (from `emaseg.data.loader.eval_loader`: this process's shard of
    (uint8 image (1, H, W, 3), uint8 label (1, H, W))) and returns the confusion matrix summed
    over all processes.

    Args:
        predict: images -> labels, see module docstring.
        batches: the evaluation loader.
        num_classes, ignore_index: of the dataset.
        device: where images go before `predict`.
        progress: a progress bar on the main process.
        desc: the bar's label.
    """
    matrix = ConfusionMatrix(num_classes, ignore_index)
    device = torch.device(device)
    with torch.inference_mode():
        for images, labels in tqdm(batches, desc=desc, leave=False, dynamic_ncols=True,
                                   disable=not (progress and is_main_process())):
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            pred = predict(images)
            if pred.shape != labels.shape:
                raise RuntimeError(f"the predictor returned labels of shape {tuple(pred.shape)} for images of "
                                   f"shape {tuple(images.shape)}; expected {tuple(labels.shape)}")
            matrix.update(labels, pred)
    if matrix.mat is None:
        matrix.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    matrix.reduce_from_all_processes()
    return matrix
