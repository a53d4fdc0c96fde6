"""Dynamic metadata for scikit-build-core: the wheel's dependencies, with torch pinned to the
major.minor of the torch it was built against.

The compiled parts (emaseg._runtime, ema_seg, libemaseg) link LibTorch's C++ API, whose ABI
changes between minor releases: a wheel built on torch 2.13 fails with `undefined symbol` on 2.14.
So the pin comes from the build environment, never from a hand-written range.
"""
from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any


def torch_requirement() -> str:
    """`torch==X.Y.*` for the torch installed where the build runs."""
    try:
        installed = version("torch")
    except PackageNotFoundError:
        raise RuntimeError(
            "building emaseg needs torch in the build environment: `pip install .` brings it "
            "(build-system.requires), and `pip install --no-build-isolation .` uses the one "
            "installed beside pip") from None
    major, minor = installed.split("+")[0].split(".")[:2]
    return f"torch=={major}.{minor}.*"


def dynamic_metadata(settings: Mapping[str, Any], project: Mapping[str, Any]) -> dict[str, Any]:
    """The [[tool.dynamic-metadata]] hook: `requires` (the other dependencies) plus the torch pin."""
    del project  # unused: the pin depends on the build environment only
    return {"dependencies": [*settings.get("requires", []), torch_requirement()]}
