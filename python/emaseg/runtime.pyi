"""Type stub of emaseg.runtime (the compiled emaseg._runtime, cpp/python/bindings.cpp)."""
from collections.abc import Callable, Iterable, Mapping, Sequence
from os import PathLike
from typing import Any, Literal, Optional, Union

import numpy as np
import numpy.typing as npt

__all__ = ["Error", "Metadata", "Segmenter", "process_streams", "process_video"]

_Path = Union[str, PathLike[str]]
_Frame = npt.NDArray[np.uint8]  # H x W x 3, BGR, at least 8 x 8
_Labels = npt.NDArray[np.integer[Any]]  # H x W class ids

class Error(RuntimeError):
    """A failure of the C++ runtime; str(e) is its message, which says what to do about it."""

    kind: Literal["model", "device", "argument", "input", "output", "runtime"]

class Metadata:
    """The model's metadata.json, parsed (docs/model_file_format.md). Read-only."""

    @property
    def format(self) -> str: ...
    @property
    def format_version(self) -> int: ...
    @property
    def config_name(self) -> str: ...
    @property
    def num_classes(self) -> int: ...
    @property
    def class_names(self) -> list[str]: ...
    @property
    def palette(self) -> list[list[int]]:
        """[R, G, B] per class."""
    @property
    def mean(self) -> list[float]: ...
    @property
    def std(self) -> list[float]: ...
    @property
    def mode(self) -> Literal["whole", "slide"]: ...
    @property
    def resize_type(self) -> Literal["scale", "size", "short_side", "none"]: ...
    @property
    def resize(self) -> list[int]:
        """The numbers of the resize: [long, short], [H, W], [N] or []."""
    @property
    def network_sizes(self) -> list[tuple[int, int]]:
        """(width, height) of each network input size a .pt2 holds a compiled network for."""
    @property
    def any_size(self) -> bool:
        """Whether frames of other network sizes run (on the any-size model)."""
    def network_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the network input for frames of this size."""
    def compiled_for(self, width: int, height: int) -> bool:
        """Whether frames of this size run on code compiled for their network size."""
    @property
    def slide_crop(self) -> list[int]: ...
    @property
    def slide_stride(self) -> list[int]: ...
    @property
    def flip(self) -> bool: ...
    @property
    def align_corners(self) -> bool: ...
    @property
    def dtype(self) -> Literal["float32", "float16", "bfloat16"]: ...
    @property
    def label_dtype(self) -> Literal["uint8", "int64"]: ...
    @property
    def checkpoint_sha256(self) -> str: ...
    @property
    def torch_version(self) -> str: ...
    @property
    def emaseg_version(self) -> str: ...
    @property
    def json(self) -> str:
        """The raw metadata.json."""
    def to_dict(self) -> dict[str, Any]:
        """metadata.json as a dict, every key included (what `python/export.py --inspect` prints)."""

class Segmenter:
    """An exported model loaded on a device.

    Args:
        model_path: a file written by python/export.py.
        device: "cpu", "cuda" (GPU 0) or "cuda:N".
        threads: LibTorch intra-op threads; None keeps LibTorch's default. Process-wide: it also
            sets torch.get_num_threads() of Python's torch, which shares the library.
        half: float16 weights and activations (CUDA only).
        optimize: CPU only (ignored on CUDA): freeze the module and run TorchScript's
            optimize_for_inference at load (oneDNN prepacked convolutions; about 1.25x faster
            for R-50-D8 at 512x1024, more memory; results equal to rounding).
        max_pixels: frames with more pixels raise Error (kind "argument") before the model runs;
            the default admits 8K UHD. 0: no limit.

    Raises:
        Error: kind "model" (missing, not TorchScript, no metadata), "device" or "argument".

    Frames are uint8 H x W x 3 BGR arrays, at least 8 x 8, as cv2 reads them; arrays whose rows
    are packed pixels (C-contiguous ones and crops of them) are used without a copy, other layouts
    are copied. Other dtypes raise TypeError and other shapes ValueError. Results are new arrays
    that own their memory. Model calls release the GIL; calls on one Segmenter run one at a time,
    so use one Segmenter per thread for parallel work.
    """

    def __init__(self, model_path: _Path, device: str = "cpu", threads: Optional[int] = None,
                 half: bool = False, optimize: bool = False, max_pixels: int = 40_000_000) -> None: ...
    @staticmethod
    def from_bytes(data: Union[bytes, bytearray, memoryview], device: str = "cpu",
                   threads: Optional[int] = None, half: bool = False,
                   optimize: bool = False, max_pixels: int = 40_000_000) -> Segmenter:
        """Loads a model from the bytes of an exported file (read during the call only)."""
    @property
    def metadata(self) -> Metadata: ...
    @property
    def device(self) -> str:
        """The device in use, e.g. "cpu" or "cuda:0"."""
    @property
    def threads(self) -> Optional[int]: ...
    @property
    def half(self) -> bool: ...
    @property
    def optimize(self) -> bool: ...
    @property
    def max_pixels(self) -> int: ...
    def segment(self, frame: _Frame) -> npt.NDArray[Union[np.uint8, np.int32]]:
        """Labels H x W: uint8, or int32 for models with more than 256 classes."""
    def segment_batch(self, frames: Union[Iterable[_Frame], npt.NDArray[np.uint8]]
                      ) -> list[npt.NDArray[Union[np.uint8, np.int32]]]:
        """Labels of each frame (a list, or an N x H x W x 3 array); equal to segment() on each,
        with one model call per run of same-size frames."""
    def probabilities(self, frame: _Frame) -> npt.NDArray[np.float32]:
        """Softmax probabilities, num_classes x H x W."""
    def warmup(self, size: tuple[int, int] = (512, 512), runs: int = 2) -> None:
        """Runs the model `runs` times on a black (height, width) frame, so that lazy
        initialisation happens before latency-sensitive work."""
    def colorize(self, labels: _Labels) -> npt.NDArray[np.uint8]:
        """H x W x 3 BGR image of labels in the palette; ids outside it are black."""
    def overlay(self, frame: _Frame, labels: _Labels, alpha: float = 0.5) -> npt.NDArray[np.uint8]:
        """frame * (1 - alpha) + colorize(labels) * alpha, rounded; alpha in [0, 1]."""

def process_video(
    input: Union[_Path, int],
    output: Optional[_Path] = None,
    *,
    model: Union[Segmenter, _Path],
    device: str = "cpu",
    threads: Optional[int] = None,
    half: bool = False,
    optimize: bool = False,
    max_pixels: int = 40_000_000,
    alpha: float = 0.5,
    every: int = 1,
    max_frames: Optional[int] = None,
    mask_dir: Optional[_Path] = None,
    fourcc: str = "mp4v",
    progress: Optional[Callable[[int, Optional[int]], Optional[bool]]] = None,
) -> dict[str, Any]:
    """Segments a video file, stream URL or camera (an int) with the C++ pipeline: decoding, the
    model and the outputs run on three threads, the GIL released.

    Args:
        input: a video file, a URL (rtsp://, http://, ...) or a camera index.
        output: overlay video to write (the input's fps and size); None writes none. It is
            written under a hidden temporary name and appears under `output` only when the run
            completes and the file plays back with every frame; a failed run (model error,
            write error, an exception of `progress`) leaves nothing there, and KeyboardInterrupt
            keeps the frames done so far as "<stem>.partial<ext>". It may not be the input.
        model: a Segmenter, or the path of an exported model to load with device, threads, half,
            optimize, max_pixels.
        alpha: overlay opacity in [0, 1].
        every: run the model on every Nth frame; the others reuse its labels.
        max_frames: read at most this many frames.
        mask_dir: a folder for label PNGs frame_NNNNNN.png of the frames the model ran on.
        fourcc: the output video's codec: "mp4v" (MPEG-4 Part 2) or "avc1" (H.264, libx264
            ultrafast, CRF 23; browsers play it).
        progress: called on this thread after each frame as progress(done, total), total None
            when unknown; returning False stops the run (the outputs are still closed properly).

    Returns:
        A summary: input, output (None if no video was written), mask_dir, device, total, frames (delivered), read, inferred,
        reused, dropped, unreadable, seconds, fps, stopped, class_pixels (per class),
        model_ms and end_to_end_ms ({count, mean, p50, p95, max}).

    Raises:
        Error: kind "input", "output" (with the path and the OS reason, e.g. a full disk),
            "model", "device", "argument" or "runtime" (with the model's own message);
            exceptions of `progress` and KeyboardInterrupt propagate after the outputs are
            cleaned up as said under `output`.
    """

def process_streams(
    sources: Union[Sequence[_Path], Mapping[str, _Path]],
    on_frame: Optional[Callable[[str, int, npt.NDArray[np.uint8], _Labels], None]] = None,
    *,
    model: Union[Segmenter, _Path],
    device: str = "cpu",
    threads: Optional[int] = None,
    workers: Optional[int] = None,
    max_frames: Optional[int] = None,
    every: int = 1,
    stall_timeout: float = 10.0,
) -> list[dict[str, Any]]:
    """Runs several videos, streams or cameras ("camera:N") through one model, as `ema_seg
    --sources` does (emaseg::MultiPipeline): each stream decodes and calls back on threads of its
    own, the model takes their frames in turn. A stream that cannot be opened or fails is marked
    "failed" and the others go on; network streams and cameras that end or stall are reopened
    with backoff (1 s doubling to 30 s); files end normally.

    Args:
        sources: inputs (named after their file's stem, made unique) or {name: input}.
        on_frame: called as on_frame(name, index, frame, labels) from the stream's own thread,
            with the GIL held; its first exception stops every stream and is raised at the end.
        model: a Segmenter (one model worker), or the path of an exported model, loaded
            `workers` times (default: on the CPU one per stream, at most 2 per thread; on CUDA
            once), each with threads / workers threads: frames of different streams then run at
            once, which on the CPU is faster than one model on every core.
        max_frames: read at most this many frames of each stream.
        every: run the model on every Nth frame of a stream; the others reuse its labels.
        stall_timeout: seconds a stream may send nothing before it counts as stalled.

    Returns:
        One dict per stream: name, input, state ("ended" or "failed"), live, frames, dropped,
        unreadable, reconnects, fps, latency_ms ({count, mean, p50, p95, max}), error.

    Raises:
        Error: kind "model", "device" or "argument"; "runtime" when the model fails (every
            stream then ends). KeyboardInterrupt ends every stream cleanly, then propagates.
    """
