"""Shared test set-up: fixed thread counts (2 cores, several processes) and reference paths."""
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("EMASEG_REFERENCE_DIR", ROOT.parent / "shared" / "reference"))
PYTHON = ROOT / ".venv" / "bin" / "python"

# OpenMP threads spin: oversubscribing the 2 cores collapses throughput.
torch.set_num_threads(1)


def reference_fixture(name: str) -> dict:
    path = REFERENCE / f"mmseg_emanet_{name}.pt"
    if not path.exists():
        pytest.skip(f"reference fixture {path} not found (set EMASEG_REFERENCE_DIR)")
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference folder {REFERENCE} not found (set EMASEG_REFERENCE_DIR)")
    return REFERENCE
