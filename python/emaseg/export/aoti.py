"""AOTInductor packages (.pt2): the deployable module through torch.export and AOTInductor.

A package holds two compiled models, "model" (uint8 BGR frames in, labels out) and
"probabilities", plus the ema-seg metadata and what the package is tied to: AOTInductor
compiles for the CPU it runs on (-march=native) and against one torch, so the torch version and
this CPU's instruction-set flags are recorded and the C++ runtime checks both before it loads
the compiled code (cpp/src/aoti_backend.cpp).
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile
from typing import Any, Callable, Optional

import torch
from torch import nn

FORMAT = "emaseg.aoti"
SUFFIX = ".pt2"
MODELS = ("model", "probabilities")
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


class _Probabilities(nn.Module):
    """The module's probabilities() as a forward, for torch.export."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.module.probabilities(images)


def export_program(module: nn.Module, example: torch.Tensor, dynamic: bool) -> torch.export.ExportedProgram:
    """torch.export of `module(images)`: batch, height and width symbolic if `dynamic`, else all
    fixed to the example's. Dim.AUTO specialises a dimension the code branches on instead
    of failing; specialised_dims() tells."""
    auto = torch.export.Dim.AUTO
    # Fixed: every dimension the example's (a batch of 1 would be specialised anyway, with a warning).
    shapes = {"images": {0: auto, 1: auto, 2: auto}} if dynamic else None
    with torch.no_grad():
        return torch.export.export(module, (example,), dynamic_shapes=shapes)


def specialised_dims(program: torch.export.ExportedProgram) -> dict[str, int]:
    """Input dimensions the export fixed to a number (N, H, W), e.g. {"H": 256}."""
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name.startswith("images"))
    shape = node.meta["val"].shape
    return {name: int(size) for name, size in zip("NHW", shape[:3]) if isinstance(size, int)}


def frame_model_name(size: tuple[int, int]) -> str:
    """The package's name for the labels model compiled for frames of exactly (H, W)."""
    return f"model_{size[0]}x{size[1]}"


def compile_package(module: nn.Module, metadata: dict[str, Any], path: str | os.PathLike, *,
                    example: torch.Tensor, dynamic: bool = True,
                    probabilities: Optional[nn.Module] = None,
                    frame_sizes: tuple[tuple[int, int], ...] = ()) -> dict[str, int]:
    """Exports and compiles `module` (labels) and its probabilities (`module.probabilities`, or the
    module `probabilities`) into one package at `path`.
    `dynamic=False` fixes the frame size to the example's: a package for one video resolution,
    faster to compile and to run (the demo at 1080p: 74 ms against 181 ms dynamic).

    `frame_sizes`: one more labels model for frames of exactly each (H, W), named by
    `frame_model_name`, recorded in the metadata's "frame_models" ({"HxW": name}): the runtime
    takes it for frames of that size (a fixed-size model runs up to 2.8x faster than the
    any-size one), and "model" for the others.

    Returns the input dimensions of "model" that are fixed (empty: any batch and frame size runs);
    the metadata records them as "fixed_input", which the runtime checks every frame against.
    """
    from torch._inductor import aot_compile
    from torch._inductor.package import package_aoti

    probabilities = probabilities if probabilities is not None else _Probabilities(module)
    programs = {name: export_program(wrapped, example, dynamic)
                for name, wrapped in (("model", module), ("probabilities", probabilities))}
    fixed: dict[str, int] = {}
    for program in programs.values():
        fixed.update(specialised_dims(program))
    frame_models = {f"{h}x{w}": frame_model_name((h, w)) for h, w in frame_sizes}
    tags = {
        "emaseg_metadata": json.dumps({**metadata, "format": FORMAT, "fixed_input": fixed,
                                       "frame_models": frame_models}),
        "emaseg_torch_version": torch.__version__,
        "emaseg_cpu_flags": " ".join(cpu_flags()),
    }
    # Freezing folds the weights into the graph: constant folding, and (for int8) the quantised
    # kernels actually run instead of float fallbacks. realize_reads_threshold=2 stores the
    # logits at the network size instead of inlining that resize into the frame-size one, which
    # recomputed it for every output pixel: the demo at 1080p took 566 ms with the default (4),
    # 74 ms with 2 (TorchScript: 148 ms).
    options = {"freezing": True, "aot_inductor.package": True, "realize_reads_threshold": 2,
               "aot_inductor.metadata": dict(tags)}
    # Inductor's compile is single-threaded Python (mostly sympy for dynamic sizes: ~100 s per
    # model for the demo): the probabilities model compiles in a second process meanwhile.
    helper = _start_compile(probabilities, example, dynamic, options)
    try:
        with torch.no_grad():
            files = {"model": aot_compile(programs["model"].module(check_guards=False), (example,), options=options)}
            for size in frame_sizes:  # one frame of one size: fixed batch and frame size
                frame = package_input(size).to(example.device)
                program = export_program(module, frame, dynamic=False)
                files[frame_model_name(size)] = aot_compile(program.module(check_guards=False), (frame,),
                                                            options=options)
            files["probabilities"] = _finish_compile(helper) or aot_compile(
                programs["probabilities"].module(check_guards=False), (example,), options=options)
    finally:  # an error or Ctrl-C here must not leave the child compiling
        if helper is not None:
            if helper[0].poll() is None:
                helper[0].kill()
                helper[0].wait()
            shutil.rmtree(os.path.dirname(helper[1]), ignore_errors=True)
    package_aoti(os.fspath(path), files)
    return fixed


_COMPILE_CHILD = """
import json, sys, torch
from torch._inductor import aot_compile
from emaseg.export.aoti import export_program
job = torch.load(sys.argv[1], weights_only=False)  # our own temporary file
program = export_program(job["module"], job["example"], job["dynamic"])
with torch.no_grad():
    files = aot_compile(program.module(check_guards=False), (job["example"],), options=job["options"])
print(json.dumps([str(f) for f in files]))
"""


def _start_compile(module: nn.Module, example: torch.Tensor, dynamic: bool,
                   options: dict[str, Any]) -> Optional[tuple[subprocess.Popen, str]]:
    """Export and aot_compile of `module` in a child process (its files land in the shared Inductor
    cache), or None for a module that cannot travel (pickled: an exported program with symbolic
    floor() cannot be saved; a class defined outside an importable module cannot be pickled)."""
    if any(isinstance(m, torch.fx.GraphModule) for m in module.modules()):  # int8: its ops need torchao
        return None
    job = os.path.join(tempfile.mkdtemp(prefix="emaseg-compile-"), "job.pt")  # a private scratch file
    try:
        torch.save({"module": module, "example": example, "dynamic": dynamic, "options": options}, job)
    except (pickle.PicklingError, AttributeError, TypeError):
        shutil.rmtree(os.path.dirname(job))
        return None
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    child = subprocess.Popen([sys.executable, "-c", _COMPILE_CHILD, job],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return child, job


def _finish_compile(helper: Optional[tuple[subprocess.Popen, str]]) -> Optional[list[str]]:
    """The child's files, or None if there is none or it failed (e.g. a class it cannot import)."""
    if helper is None:
        return None
    child, _ = helper
    out, _ = child.communicate()
    if child.returncode != 0:
        return None
    return json.loads(out.strip().splitlines()[-1])


def read_package_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of the package's labels model (ema-seg's and AOTInductor's keys),
    read from the archive without loading any compiled code."""
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                parts = name.split("/")
                if parts[1:4] == ["data", "aotinductor", "model"] and name.endswith(".wrapper_metadata.json"):
                    return json.loads(archive.read(name))
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise PackageError(f"{path}: not a readable .pt2 package ({e})") from None
    raise PackageError(f"{path}: not an AOTInductor package with a model named 'model'")


def check_runnable(tags: dict[str, str], path: str | os.PathLike) -> None:
    """Refuses, with the reason, a package this machine cannot run."""
    built = tags.get("emaseg_torch_version", "?")
    if built.split("+")[0] != torch.__version__.split("+")[0]:
        raise PackageError(f"{path} was compiled with torch {built}, this is torch {torch.__version__}; "
                           "export it again with this torch")
    missing = sorted(set(tags.get("emaseg_cpu_flags", "").split()) - set(cpu_flags()))
    if missing:
        raise PackageError(f"{path} was compiled for a CPU with {' '.join(missing)}, which this CPU lacks; "
                           "export it again on this machine")


def load_package(path: str | os.PathLike, device: str = "cpu",
                 name: str = "model") -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any]]:
    """One compiled model of a package (`model`: labels, `probabilities`) and the ema-seg metadata."""
    from torch._inductor.package import load_package as load_aoti

    tags = read_package_metadata(path)
    if "emaseg_metadata" not in tags:
        raise PackageError(f"{path}: an AOTInductor package without ema-seg metadata")
    check_runnable(tags, path)
    device_index = -1 if device == "cpu" else torch.device(device).index or 0
    compiled = load_aoti(os.fspath(path), name, device_index=device_index)
    return compiled, json.loads(tags["emaseg_metadata"])


def is_package(path: str | os.PathLike) -> bool:
    """True for AOTInductor packages, whatever the file's name (TorchScript files are zips too)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("/archive_format") and archive.read(n) == b"pt2" for n in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def package_input(example_size: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """The example frames torch.export traces with: a batch of 2 and odd sizes, since Dim.AUTO
    specialises dimensions whose example is 0 or 1; or one frame of the fixed frame size."""
    if example_size is not None:
        # One frame of one size: a fixed batch of 1 compiles to markedly faster code than a
        # symbolic batch (demo at 1080p: 74 ms against 123 ms); the runtime feeds frames one by one.
        return torch.zeros(1, example_size[0], example_size[1], 3, dtype=torch.uint8)
    return torch.zeros(2, 97, 131, 3, dtype=torch.uint8)


__all__ = ["FORMAT", "PackageError", "check_runnable", "compile_package", "cpu_flags", "frame_model_name", "is_package",
           "load_package", "package_input", "read_package_metadata", "specialised_dims"]
