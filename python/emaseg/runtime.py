"""The C++ runtime for Python: exported models (docs/model_file_format.md) on numpy frames.

    from emaseg.runtime import Segmenter

    seg = Segmenter("models/emanet_demo.pt", threads=2)
    frame = cv2.imread("street.jpg")                  # uint8 H x W x 3, BGR
    labels = seg.segment(frame)                       # uint8 H x W class ids
    shown = seg.overlay(frame, labels, alpha=0.5)     # BGR, the model's palette

The same code as the `ema_seg` CLI and C++ apps (cpp/include/emaseg/), so all three give the same
labels. The GIL is released while the model runs; see runtime.pyi for the whole API.
"""
from .installed import check_torch

check_torch()  # a clear error, not an `undefined symbol`, when torch is not the build's major.minor
try:
    from ._runtime import Error, Metadata, Segmenter, process_streams, process_video
except ImportError as e:  # the extension is a build product of the C++ project
    raise ImportError(
        f"emaseg.runtime needs the compiled module emaseg._runtime ({e}); install emaseg with "
        "`pip install .` (or bash scripts/setup.sh in the checkout)") from e

__all__ = ["Error", "Metadata", "Segmenter", "process_streams", "process_video"]
