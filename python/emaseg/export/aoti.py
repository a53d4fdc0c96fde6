"""AOTInductor packages (.pt2): the deployable module through torch.export and AOTInductor.

A package (format version 2) holds the network compiled by AOTInductor for a few fixed network
input sizes (`net_HxW`) and, usually, frozen by TorchScript for any size (`emaseg/any_size.pt`):
uint8 BGR frames already at the network size in, scores out (emaseg.export.network). The frame
work, the exact resize in and the labels out at any frame size, runs outside the network. The
record `emaseg/package.json` holds the ema-seg metadata and what the package is tied to: AOTInductor
compiles for the CPU it runs on (-march=native) and against one torch, so the torch version and
this CPU's instruction-set flags are recorded and the C++ runtime checks both (and the format
version) before it loads the compiled code (cpp/src/aoti_backend.cpp).
"""
from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from .network import model_name, size_name

FORMAT = "emaseg.aoti"
# Version 2: network models at the network input size; the frame work runs outside (network.py).
FORMAT_VERSION = 2
SUFFIX = ".pt2"
# Instruction-set extensions a compiler may use with -march=native, as /proc/cpuinfo names them.
ISA_FLAGS = (
    "sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "avx", "avx2", "fma", "f16c", "bmi1", "bmi2",
    "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl", "avx512ifma", "avx512vbmi",
    "avx512_vbmi2", "avx512_vnni", "avx512_bitalg", "avx512_vpopcntdq", "avx512_bf16",
    "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8",
)


class PackageError(RuntimeError):
    """A .pt2 file that is missing, not an ema-seg package, or cannot run here."""


def cpu_flags() -> list[str]:
    """The ISA extensions of this CPU that code compiled here may use."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [flag for flag in ISA_FLAGS if flag in have]
    except OSError:
        pass
    return []


RECORD = "emaseg/package.json"     # the ema-seg record: metadata, torch version, CPU flags, device
ANY_SIZE_RECORD = "emaseg/any_size.pt"  # the network for any size: a frozen TorchScript archive
# What the models of one package share: sizes added to a package must come from the same module.
SAME_MODULE = ("checkpoint_sha256", "config_name", "resize", "mode", "slide", "dtype", "align_corners", "num_classes")


def network_example(size: tuple[int, int]) -> torch.Tensor:
    """What a network model is traced with: one frame of its network size (a fixed batch of 1
    compiles to markedly faster code than a symbolic one; the runtime feeds frames one by one)."""
    return torch.zeros(1, size[0], size[1], 3, dtype=torch.uint8)


def compile_package(network: nn.Module, metadata: dict[str, Any], path: str | os.PathLike, *,
                    network_sizes: Sequence[tuple[int, int]] = (), any_size: bool = True,
                    device: str = "cpu", add_to: Optional[str | os.PathLike] = None) -> dict[str, Any]:
    """Writes `network` (emaseg.export.network.NetworkModel: uint8 frames at the network size in,
    scores out) into one package at `path`: compiled by AOTInductor as `net_HxW` for each of
    `network_sizes` (fixed, batch 1: the fast code) and, with `any_size`, frozen by TorchScript for
    every other size. `add_to`: an existing package whose models are kept (only sizes it lacks
    are compiled).

    Returns the ema-seg metadata the package records: `metadata` with the format, "any_size" and
    "network_models" ({"HxW": name})."""
    kept: dict[str, Any] = {}
    if add_to is not None:
        kept = json.loads(read_package_metadata(add_to)["emaseg_metadata"])
        differ = [k for k in SAME_MODULE if kept.get(k) != metadata.get(k)]
        if differ:
            raise PackageError(f"{add_to} was exported with another {', '.join(differ)} than asked now; its models "
                               "and the new ones would not compute the same thing (give the same export options)")
    sizes = [s for s in dict.fromkeys(tuple(s) for s in network_sizes)
             if size_name(s) not in kept.get("network_models", {})]
    models = {**kept.get("network_models", {}), **{size_name(s): model_name(s) for s in sizes}}
    meta = {**metadata, "format": FORMAT, "format_version": FORMAT_VERSION,
            "any_size": bool(any_size or kept.get("any_size")), "network_models": dict(sorted(models.items()))}
    if not meta["any_size"] and not models:
        raise PackageError("a package needs at least one network size, or the any-size model")
    tags = {"emaseg_metadata": json.dumps(meta), "emaseg_torch_version": torch.__version__,
            "emaseg_cpu_flags": " ".join(cpu_flags()), "emaseg_device": "cuda" if device.startswith("cuda") else "cpu"}
    any_size_bytes = _script_any_size(network) if any_size and not kept.get("any_size") else None
    files = _compile_sizes(network, sizes, device)
    with tempfile.TemporaryDirectory(prefix="emaseg-package-") as tmp:
        fresh = os.path.join(tmp, "new.pt2")
        if files:
            package_aoti(fresh, files)
        _write_archive(path, [p for p in (add_to, fresh if files else None) if p is not None], tags, any_size_bytes)
    return meta


def _script_any_size(network: nn.Module) -> bytes:
    """The network for any input size as a frozen TorchScript archive (BN folded into the
    convolutions, constants inlined)."""
    try:
        frozen = torch.jit.freeze(torch.jit.script(network.eval()))
    except Exception as e:  # noqa: BLE001 - e.g. an int8 graph of torchao ops has no TorchScript form
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PackageError("this network has no any-size (TorchScript) form: give its network sizes "
                           f"(--frame-size, --network-sizes or --aspect-ratios) with --no-any-size ({first})") from e
    buffer = io.BytesIO()
    torch.jit.save(frozen, buffer)
    return buffer.getvalue()


def _compile_sizes(network: nn.Module, sizes: list[tuple[int, int]], device: str) -> dict[str, Any]:
    """AOTInductor's files for each fixed network size. Inductor's compile is mostly single-threaded
    Python: a second process compiles every other size meanwhile."""
    # Freezing folds the weights into the graph: constant folding, prepacked convolution weights,
    # and (for int8) the quantised kernels actually run instead of float fallbacks.
    options = {"freezing": True, "aot_inductor.package": True}
    theirs, mine = sizes[0::2], sizes[1::2]
    helper = _start_compile(network, theirs, device, options) if len(sizes) > 1 else None
    if helper is None:
        theirs, mine = [], sizes
    files: dict[str, Any] = {}
    try:
        for size in mine:
            files[model_name(size)] = _compile_one(network, size, device, options)
        done = _finish_compile(helper)
        for size, compiled in zip(theirs, done or []):
            files[model_name(size)] = compiled
        for size in (theirs if done is None else []):  # the child failed: compile them here
            files[model_name(size)] = _compile_one(network, size, device, options)
    finally:  # an error or Ctrl-C here must not leave the child compiling
        if helper is not None:
            if helper[0].poll() is None:
                helper[0].kill()
                helper[0].wait()
            shutil.rmtree(os.path.dirname(helper[1]), ignore_errors=True)
    return {name: files[name] for name in sorted(files)}


def _compile_one(network: nn.Module, size: tuple[int, int], device: str, options: dict[str, Any]) -> Any:
    from torch._inductor import aot_compile

    example = network_example(size).to(device)
    with torch.no_grad():
        program = torch.export.export(network, (example,))  # every dimension fixed to the example's
        return aot_compile(program.module(check_guards=False), (example,), options=options)


def package_aoti(path: str, files: dict[str, Any]) -> None:
    from torch._inductor.package import package_aoti as write

    write(path, files)


def _write_archive(path: str | os.PathLike, sources: list[str | os.PathLike], tags: dict[str, str],
                   any_size: Optional[bytes]) -> None:
    """One package at `path` (torch's own archive writer): the compiled models of `sources` (an
    existing package, a fresh one), the ema-seg record `tags` and the any-size network."""
    from torch.export.pt2_archive._package import PT2ArchiveReader, PT2ArchiveWriter

    with PT2ArchiveWriter(os.fspath(path)) as out:
        for source in sources:
            with PT2ArchiveReader(os.fspath(source)) as archive:
                for name in archive.get_file_names():
                    # The archive's own records (its format, the zip writer's version) and the
                    # ema-seg record are written once.
                    if out.has_record(name) or name.startswith(".data/") or name == RECORD:
                        continue
                    out.write_bytes(name, archive.read_bytes(name))
        if any_size is not None:
            out.write_bytes(ANY_SIZE_RECORD, any_size)
        out.write_string(RECORD, json.dumps(tags))


_COMPILE_CHILD = """
import json, sys, torch
from emaseg.export.aoti import _compile_one
job = torch.load(sys.argv[1], weights_only=False)  # our own temporary file
files = [[str(f) for f in _compile_one(job["network"], size, job["device"], job["options"])] for size in job["sizes"]]
print(json.dumps(files))
"""


def _start_compile(network: nn.Module, sizes: list[tuple[int, int]], device: str,
                   options: dict[str, Any]) -> Optional[tuple[subprocess.Popen, str]]:
    """Export and aot_compile of `network` for each of `sizes` in a child process (its files land
    in the shared Inductor cache), or None for a module that cannot travel (int8 graphs need
    torchao's ops registered; a class defined outside an importable module cannot be pickled)."""
    if any(isinstance(m, torch.fx.GraphModule) for m in network.modules()):
        return None
    job = os.path.join(tempfile.mkdtemp(prefix="emaseg-compile-"), "job.pt")  # a private scratch file
    try:
        torch.save({"network": network, "sizes": sizes, "device": device, "options": options}, job)
    except (pickle.PicklingError, AttributeError, TypeError):
        shutil.rmtree(os.path.dirname(job))
        return None
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    child = subprocess.Popen([sys.executable, "-c", _COMPILE_CHILD, job],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return child, job


def _finish_compile(helper: Optional[tuple[subprocess.Popen, str]]) -> Optional[list[list[str]]]:
    """The child's files per size, or None if there is none or it failed (e.g. a class it cannot import)."""
    if helper is None:
        return None
    child, _ = helper
    out, _ = child.communicate()
    if child.returncode != 0:
        return None
    return json.loads(out.strip().splitlines()[-1])


def _record(archive: zipfile.ZipFile, record: str) -> Optional[str]:
    """The archive's name of `record` (records sit under the archive's own top folder)."""
    for name in archive.namelist():
        if name.split("/", 1)[-1] == record:
            return name
    return None


def read_package_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The package's ema-seg record (emaseg_metadata, emaseg_torch_version, emaseg_cpu_flags,
    emaseg_device), read from the archive without loading any compiled code."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = _record(archive, RECORD)
            if name is not None:
                return json.loads(archive.read(name))
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise PackageError(f"{path}: not a readable .pt2 package ({e})") from None
    raise PackageError(f"{path}: a .pt2 package without ema-seg's record; export it again with python python/export.py")


def check_runnable(tags: dict[str, str], path: str | os.PathLike) -> None:
    """Refuses, with the reason, a package this machine or this version cannot run."""
    meta = json.loads(tags["emaseg_metadata"])
    if meta.get("format_version") != FORMAT_VERSION:
        raise PackageError(f"{path} is a .pt2 of format version {meta.get('format_version')}; this ema-seg "
                           f"reads version {FORMAT_VERSION}: export it again with python python/export.py")
    built = tags.get("emaseg_torch_version", "?")
    if built.split("+")[0] != torch.__version__.split("+")[0]:
        raise PackageError(f"{path} was compiled with torch {built}, this is torch {torch.__version__}; "
                           "export it again with this torch")
    missing = sorted(set(tags.get("emaseg_cpu_flags", "").split()) - set(cpu_flags()))
    if missing:
        raise PackageError(f"{path} was compiled for a CPU with {' '.join(missing)}, which this CPU lacks; "
                           "export it again on this machine")


class PackageModel:
    """A .pt2 package as one model: `model(images)` maps uint8 BGR frames (N, H, W, 3) to labels
    (N, H, W) and `probabilities(images)` to (N, C, H, W), like the .pt file and the C++ runtime:
    each frame runs the network compiled for its network size (the any-size one if none was),
    with the frame work of emaseg.export.network around it."""

    def __init__(self, path: str | os.PathLike, device: str, meta: dict[str, Any]) -> None:
        from torch.export.pt2_archive._package import load_pt2

        device_index = -1 if device == "cpu" else torch.device(device).index or 0
        self.runners = load_pt2(os.fspath(path), device_index=device_index).aoti_runners if meta["network_models"] else {}
        self.any_size = None
        if meta["any_size"]:
            with zipfile.ZipFile(path) as archive:
                self.any_size = torch.jit.load(io.BytesIO(archive.read(_record(archive, ANY_SIZE_RECORD))),
                                               map_location=device)
        self.meta, self.path = meta, path
        self.label_dtype = torch.uint8 if meta["label_dtype"] == "uint8" else torch.int64

    def network(self, size: tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor]:
        """The network for frames whose network input is `size`; frames one by one for the
        fixed-size models, which take a batch of 1."""
        name = self.meta["network_models"].get(size_name(size))
        if name is None:
            if self.any_size is None:
                raise ValueError(f"{self.path} has no network model for the network input {size_name(size)} and "
                                 f"no any-size model; it was compiled for {', '.join(self.meta['network_models'])}")
            return self.any_size
        runner = self.runners[name]
        return lambda x: torch.cat([runner(x[i:i + 1]) for i in range(x.shape[0])])

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        from .network import check_frames, run_frames

        size = check_frames(images, self.meta)
        return run_frames(self.network(size), images, size, self.meta["align_corners"], self.label_dtype)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        from .network import check_frames, frame_probabilities

        size = check_frames(images, self.meta)
        return frame_probabilities(self.network(size), images, size, self.meta["align_corners"])


def load_package(path: str | os.PathLike, device: str = "cpu") -> tuple[PackageModel, dict[str, Any]]:
    """The package as one model (PackageModel) and its ema-seg metadata, after the checks that it
    runs here."""
    tags = read_package_metadata(path)
    if "emaseg_metadata" not in tags:
        raise PackageError(f"{path}: a .pt2 package without ema-seg metadata")
    check_runnable(tags, path)
    meta = json.loads(tags["emaseg_metadata"])
    return PackageModel(path, device, meta), meta


def is_package(path: str | os.PathLike) -> bool:
    """True for AOTInductor packages, whatever the file's name (TorchScript files are zips too)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("/archive_format") and archive.read(n) == b"pt2" for n in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def package_input(example_size: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """Example frames for a whole-module export (ONNX): a batch of 2 of odd sizes, or one frame of
    the fixed frame size."""
    if example_size is not None:
        return torch.zeros(1, example_size[0], example_size[1], 3, dtype=torch.uint8)
    return torch.zeros(2, 97, 131, 3, dtype=torch.uint8)


__all__ = ["FORMAT", "FORMAT_VERSION", "PackageError", "PackageModel", "check_runnable", "compile_package", "cpu_flags",
           "is_package", "load_package", "network_example", "read_package_metadata"]
