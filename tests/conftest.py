"""Shared test set-up: fixed thread counts (2 cores, several processes) and reference paths."""
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("EMASEG_REFERENCE_DIR", ROOT / "tests" / "data" / "reference"))
PYTHON = ROOT / ".venv" / "bin" / "python"

# OpenMP threads spin: oversubscribing the 2 cores collapses throughput.
torch.set_num_threads(1)


def _untracked_files() -> set[str]:
    """Files in the checkout git neither tracks nor ignores (empty outside a git checkout)."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=all"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return {line[3:] for line in out.stdout.splitlines() if line.startswith("?? ")} if out.returncode == 0 else set()


@pytest.fixture(scope="session", autouse=True)
def checkout_stays_clean():
    """Tests write into tmp_path, never into the checkout (a CLI run's default output lands in
    its working folder, for one): a file they leave there fails the run."""
    before = _untracked_files()
    yield
    left = sorted(_untracked_files() - before)
    if left:
        pytest.fail(f"tests left files in the checkout: {', '.join(left[:10])}", pytrace=False)


def missing(reason: str) -> None:
    """Test data or a build product is missing: skip the test, but fail it under CI=true, where
    everything must be there (a skip would hide that the suite did not run)."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def import_runtime():
    """The bindings emaseg.runtime; without them the calling module's tests are skipped (under
    CI=true: a collection error, the bindings must be built there)."""
    try:
        import emaseg.runtime as runtime
    except ImportError as e:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"emaseg.runtime is not built ({e})", allow_module_level=True)
    return runtime


def reference_fixture(name: str) -> dict:
    path = REFERENCE / f"mmseg_emanet_{name}.pt"
    if not path.exists():
        missing(f"reference fixture {path} not found (set EMASEG_REFERENCE_DIR)")
    return torch.load(path, weights_only=True)


# The reference fixtures were computed on an AVX-512 CPU; oneDNN's AVX2 (and AMX) convolution
# kernels block the same float32 sums differently, so each element carries rounding of the order of
# eps x the magnitudes summed into it. Measured against the fixtures on an AVX2-only EPYC: at most
# 18.5 eps x the tensor's largest |value| (r18w16 logits after the resize; r50w8's backbone is
# within 10 eps). A bound of 64 eps x that scale leaves 3.5x headroom and still catches a real
# difference: a wrong weight, BN statistic or op moves values by far more than 1e-5 of the scale
# (test_reference_parity.py plants one of 1e-4).
REFERENCE_EPS_FACTOR = 64


def assert_close_to_reference(ours: torch.Tensor, ref: torch.Tensor) -> None:
    """`ours` equals the reference's tensor up to float32 summation order (see above)."""
    scale = float(ref.abs().max())
    atol = REFERENCE_EPS_FACTOR * torch.finfo(torch.float32).eps * max(scale, 1.0)
    torch.testing.assert_close(ours, ref, rtol=0.0, atol=atol)


@pytest.fixture(scope="session")
def built_cli() -> Path:
    """The CLI binary; a module whose tests all run it says `pytestmark = usefixtures("built_cli")`."""
    from cpp_helpers import require_cli

    return require_cli()


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        missing(f"reference folder {REFERENCE} not found (set EMASEG_REFERENCE_DIR)")
    return REFERENCE


def eager_logits(model: torch.nn.Module, bgr: np.ndarray, network_size: tuple[int, int]) -> torch.Tensor:
    """The checkpoint's logits for a BGR frame, written out longhand: the uint8 frame resized to the
    network size with OpenCV's bilinear (as mmcv's imresize), BGR->RGB, normalise, the network,
    logits resized to the network size, then to the frame's."""
    cfg = model.config
    h, w = bgr.shape[:2]
    if network_size != (h, w):
        bgr = cv2.resize(bgr, (network_size[1], network_size[0]), interpolation=cv2.INTER_LINEAR)
    rgb = bgr[..., ::-1] if cfg.data.bgr_to_rgb else bgr
    # Contiguous NCHW, as the exported module feeds its network: a channels-last tensor would
    # take other convolution kernels, which round differently.
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().contiguous()
    x = (x - torch.tensor(cfg.data.mean).view(1, 3, 1, 1)) / torch.tensor(cfg.data.std).view(1, 3, 1, 1)
    with torch.no_grad():
        out = model(x)["out"]
    align = cfg.model.align_corners
    out = F.interpolate(out, size=network_size, mode="bilinear", align_corners=align)
    if network_size != (h, w):
        out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=align)
    return out[0]


# The longest test files start first: pytest-xdist hands out whole files (--dist loadfile) in
# collection order, and a long file handed out last keeps one worker busy while the other idles.
LONGEST_FIRST = ("test_train_synthetic.py", "test_benchmark.py", "test_aoti.py", "test_int8_onnx.py",
                 "test_parity.py")


def pytest_collection_modifyitems(items: list) -> None:
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within each file is kept
