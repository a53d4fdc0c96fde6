"""Where pip installed emaseg's compiled parts, and whether the torch beside them is the right one.

`pip install .` (scikit-build-core) puts them in the package folder: `_runtime` (the bindings),
`bin/ema_seg`, `lib/libemaseg.a`, `lib/cmake/emaseg/`, `include/emaseg/`, and `_build_info.py`,
which CMake writes with the torch version they were compiled against. An editable install keeps
the Python sources in the checkout, so the folder is found through `_build_info`, not `__file__`.
Nothing here imports torch: the `ema_seg` launcher runs this before every command.
"""
from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


class InstallError(ImportError):
    """The compiled parts are missing, or built for another torch than the installed one."""


def install_dir() -> Path:
    """The folder holding the compiled parts (site-packages/emaseg when installed by pip)."""
    spec = importlib.util.find_spec("emaseg._build_info")
    if spec is None or spec.origin is None:
        raise InstallError(
            "emaseg's compiled parts (bindings, ema_seg, C++ SDK) are not installed here: this "
            "emaseg comes from a source checkout; install it with `pip install .` (or "
            "bash scripts/setup.sh in the checkout)")
    return Path(spec.origin).parent


def cmake_prefix_path() -> str:
    """For CMAKE_PREFIX_PATH, so that an app's find_package(emaseg) finds the installed SDK
    (as torch.utils.cmake_prefix_path does for LibTorch)."""
    return str(install_dir() / "lib" / "cmake")


def major_minor(torch_version: str) -> str:
    """'2.13.0+cpu' -> '2.13'."""
    return ".".join(torch_version.split("+")[0].split(".")[:2])


def check_torch(installed: str | None = None, built: str | None = None) -> None:
    """InstallError, saying what to do, when the installed torch's major.minor is not the one the
    compiled parts were built against (LibTorch's C++ ABI changes between minor releases; the
    loader would otherwise fail with an `undefined symbol`). Without an install (a plain CMake
    build in a checkout) there is nothing recorded to check against."""
    if built is None:
        if importlib.util.find_spec("emaseg._build_info") is None:
            return
        built = importlib.import_module("emaseg._build_info").TORCH_VERSION
    if installed is None:
        try:
            installed = version("torch")
        except PackageNotFoundError:
            raise InstallError(f"emaseg needs torch=={major_minor(built)}.*, and no torch is "
                               "installed") from None
    if major_minor(installed) != major_minor(built):
        raise InstallError(
            f"emaseg's compiled parts were built against torch {built}, but torch {installed} is "
            f"installed: install torch=={major_minor(built)}.* (`pip install "
            f"'torch=={major_minor(built)}.*'`), or rebuild emaseg against this torch "
            "(`pip install --no-build-isolation --force-reinstall --no-deps .` in its checkout)")
