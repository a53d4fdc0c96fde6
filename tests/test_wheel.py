"""`pip install .` ships everything: a wheel built from this checkout, installed into a fresh venv,
gives the bindings, the `ema_seg` command and the C++ SDK, with nothing from the checkout.

The wheel is built the way the developers' set-up builds (EMASEG_DEV_BUILD=1: the persistent build/,
so nothing is compiled twice; pyproject.toml), with --no-build-isolation against this venv's torch.
The fresh venv gets only the wheel and what its metadata asks for, from pip's usual sources; every
command there runs outside the checkout with no PYTHONPATH or LD_LIBRARY_PATH.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import pytest

from cpp_helpers import REPO, load_make_test_model, synthetic_frames, write_video

pytestmark = pytest.mark.slow


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 900,
        check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    if check:
        assert result.returncode == 0, f"{args} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def clean_env(venv: Path) -> dict[str, str]:
    """The environment of a user who activated `venv`: none of this test run's paths."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "LD_LIBRARY_PATH", "VIRTUAL_ENV", "EMASEG_CLI", "EMASEG_DEV_BUILD")}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), "/usr/local/bin", "/usr/bin", "/bin"])
    env["VIRTUAL_ENV"] = str(venv)
    env["OMP_NUM_THREADS"] = "1"
    return env


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "EMASEG_DEV_BUILD": "1"}
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-C", "build.tool-args=-j2", "-w", dist, REPO, cwd=dist, env=env)
    wheels = list(dist.glob("emaseg-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory) -> Path:
    """A fresh venv (no system site-packages) with the wheel installed by plain pip."""
    root = tmp_path_factory.mktemp("venv")
    venv = root / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=root)
    # --no-compile: byte-compiling torch's thousands of modules is half of the install's time.
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-compile", wheel, cwd=root,
        env=clean_env(venv))
    return venv


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("assets")
    make = load_make_test_model()
    image = root / "sample.png"
    assert cv2.imwrite(str(image), make.sample_image())
    return {"model": make.make_test_model(root / "tiny.pt"), "image": image,
            "video": write_video(root / "clip.avi", synthetic_frames(6, 48, 64))}


def test_wheel_holds_every_part_and_pins_the_build_torch(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    must = ["emaseg/__init__.py", "emaseg/runtime.py", "emaseg/runtime.pyi", "emaseg/launcher.py",
            "emaseg/_build_info.py", "emaseg/bin/ema_seg", "emaseg/lib/libemaseg.a",
            "emaseg/include/emaseg/emaseg.h", "emaseg/include/emaseg/multi_pipeline.h",
            "emaseg/lib/cmake/emaseg/emasegConfig.cmake", "emaseg/lib/cmake/emaseg/emasegTargets.cmake",
            "streetgen/__init__.py"]
    for name in must:
        assert name in names, f"{name} missing from {wheel.name}"
    modules = [n for n in names if re.fullmatch(r"emaseg/_runtime\..*\.so", n)]
    assert len(modules) == 1, modules
    assert not [n for n in names if n.startswith(("build/", "tests/", "data/", "models/"))]

    dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    zf = zipfile.ZipFile(wheel)
    metadata = zf.read(f"{dist_info}/METADATA").decode()
    built = importlib.metadata.version("torch")  # this venv's torch built the wheel
    major_minor = ".".join(built.split("+")[0].split(".")[:2])
    assert re.findall(r"^Requires-Dist: (torch\S*)$", metadata, re.M) == [f"torch=={major_minor}.*"]
    entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    assert re.search(r"^ema_seg = emaseg\.launcher:main$", entry_points, re.M), entry_points
    assert f'TORCH_VERSION = "{built}"' in zf.read("emaseg/_build_info.py").decode()


def test_compiled_parts_find_torch_by_relative_rpath_only(venv: Path):
    site = site_packages(venv)
    for binary in [site / "emaseg" / "bin" / "ema_seg", *(site / "emaseg").glob("_runtime*.so")]:
        dynamic = run("readelf", "-d", binary, cwd=venv).stdout
        paths = re.findall(r"R(?:UN)?PATH\)\s+Library r(?:un)?path: \[(.*)\]", dynamic)
        assert paths, dynamic
        for entry in ":".join(paths).split(":"):
            assert entry.startswith("$ORIGIN/"), f"{binary.name} has a non-relative RPATH {entry}"
        ldd = run("ldd", binary, cwd=venv, env=clean_env(venv)).stdout
        assert "not found" not in ldd, ldd
        torch_cpu = re.search(r"libtorch_cpu\.so => (\S+)", ldd)
        assert torch_cpu, ldd
        assert Path(torch_cpu.group(1)).resolve() == (site / "torch" / "lib" / "libtorch_cpu.so").resolve()


def test_no_cuda_torch_slipped_in(venv: Path):
    """The fresh venv resolved the wheel's torch==X.Y.* to the same build as the one the wheel was
    built with (here the CPU build), and no CUDA runtime wheels came along."""
    probe = "import json, torch; print(json.dumps([torch.__version__, torch.version.cuda]))"
    version, cuda = json.loads(run(venv / "bin" / "python", "-c", probe, cwd=venv,
                                   env=clean_env(venv)).stdout)
    import torch

    assert (version, cuda) == (torch.__version__, torch.version.cuda)
    listed = json.loads(run(venv / "bin" / "python", "-m", "pip", "list", "--format", "json",
                            cwd=venv, env=clean_env(venv)).stdout)
    assert not [p["name"] for p in listed if p["name"].lower().startswith("nvidia-")]


def test_bindings_import_and_segment_outside_the_checkout(venv: Path, assets, tmp_path):
    code = (
        "import sys, cv2, emaseg, emaseg.runtime as rt\n"
        "assert 'site-packages' in emaseg.__file__, emaseg.__file__\n"
        f"seg = rt.Segmenter({str(assets['model'])!r}, threads=1)\n"
        f"labels = seg.segment(cv2.imread({str(assets['image'])!r}))\n"
        "print(*[int((labels == c).sum()) for c in range(4)])\n"
    )
    counts = run(venv / "bin" / "python", "-c", code, cwd=tmp_path, env=clean_env(venv)).stdout.split()
    image = cv2.imread(str(assets["image"]))
    quarter = image.shape[0] * image.shape[1] // 4
    assert counts == [str(quarter)] * 4  # the sample image is a quarter of each class


def test_installed_cli_segments_a_video(venv: Path, assets, tmp_path):
    cli = venv / "bin" / "ema_seg"
    out = tmp_path / "overlay.mp4"
    result = run(cli, "--video", assets["video"], "--model", assets["model"], "--output", out,
                 "--threads", "1", "--json", cwd=tmp_path, env=clean_env(venv))
    report = json.loads(result.stdout)
    assert report["frames"] == 6, report
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    # Usage errors keep the binary's exit codes through the launcher.
    assert run(cli, "--no-such-flag", cwd=tmp_path, env=clean_env(venv), check=False).returncode == 2


def test_find_package_app_builds_against_the_wheel(venv: Path, assets, tmp_path):
    prefix = run(venv / "bin" / "python", "-c", "import emaseg; print(emaseg.cmake_prefix_path)",
                 cwd=tmp_path, env=clean_env(venv)).stdout.strip()
    assert Path(prefix, "emaseg", "emasegConfig.cmake").is_file(), prefix
    build = tmp_path / "app"
    env = clean_env(venv)
    run("cmake", "-S", REPO / "cpp" / "examples" / "segment_image", "-B", build,
        "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_PREFIX_PATH={prefix}", f"-DEMBED_MODEL={assets['model']}",
        cwd=tmp_path, env=env)
    run("cmake", "--build", build, "-j", "2", cwd=tmp_path, env=env)
    cache = (build / "CMakeCache.txt").read_text()
    site = site_packages(venv)
    assert f"Torch_DIR:PATH={site}/torch/share/cmake/Torch" in cache  # the wheel's own torch
    shares = run(build / "segment_image", assets["image"], tmp_path / "overlay.png", assets["model"],
                 cwd=tmp_path, env=env).stdout
    embedded = run(build / "segment_image", assets["image"], tmp_path / "overlay2.png",
                   cwd=tmp_path, env=env).stdout
    for name in ("background", "red", "green", "blue"):
        assert f"{name} 0.2500" in shares, shares
    assert shares == embedded
    assert cv2.imread(str(tmp_path / "overlay.png")) is not None


def test_find_package_refuses_a_libtorch_of_another_minor(venv: Path, tmp_path):
    """As if the venv's torch were upgraded after the install: the package's record of the build's
    LibTorch is changed (and restored), and configuring an app fails, naming both versions."""
    site = site_packages(venv)
    config = site / "emaseg" / "lib" / "cmake" / "emaseg" / "emasegConfig.cmake"
    original = config.read_text()
    built = re.search(r'_emaseg_torch_built "([^"]+)"', original).group(1)
    config.write_text(original.replace(f'_emaseg_torch_built "{built}"', '_emaseg_torch_built "1.99.0"')
                      .replace(f"LibTorch {built} but", "LibTorch 1.99.0 but"))
    try:
        result = run("cmake", "-S", REPO / "cpp" / "examples" / "segment_image", "-B", tmp_path / "app",
                     f"-DCMAKE_PREFIX_PATH={site / 'emaseg' / 'lib' / 'cmake'}", cwd=tmp_path,
                     env=clean_env(venv), check=False)
    finally:
        config.write_text(original)
    assert result.returncode != 0
    message = " ".join(result.stderr.split())
    assert f"emaseg was built against LibTorch 1.99.0 but found {built}" in message, result.stderr
    assert "install torch==1.99.*" in message, result.stderr


def test_another_torch_is_a_clear_error_not_an_undefined_symbol(venv: Path, tmp_path):
    """As after `pip install torch==<another minor>`: the record of the build's torch is changed,
    since the fresh venv holds one torch. Runs last: it edits the installed record, then restores it."""
    site = site_packages(venv)
    record = site / "emaseg" / "_build_info.py"
    original = record.read_text()
    built = re.search(r'TORCH_VERSION = "([^"]+)"', original).group(1)
    record.write_text(original.replace(f'"{built}"', '"1.99.0"'))
    try:
        shutil.rmtree(site / "emaseg" / "__pycache__", ignore_errors=True)
        cli = run(venv / "bin" / "ema_seg", "--help", cwd=tmp_path, env=clean_env(venv), check=False)
        assert cli.returncode == 1
        assert "built against torch 1.99.0" in cli.stderr and "install torch==1.99.*" in cli.stderr
        assert "Traceback" not in cli.stderr
        bindings = run(venv / "bin" / "python", "-c", "import emaseg.runtime", cwd=tmp_path,
                       env=clean_env(venv), check=False)
        assert bindings.returncode == 1
        assert "InstallError: emaseg's compiled parts were built against torch 1.99.0" in bindings.stderr
        # The pure-Python package still imports (training needs no compiled part).
        run(venv / "bin" / "python", "-c", "import emaseg; emaseg.get_config", cwd=tmp_path,
            env=clean_env(venv))
    finally:
        record.write_text(original)


def test_torch_check_compares_major_minor():
    from emaseg.installed import InstallError, check_torch

    check_torch(installed="2.13.0+cpu", built="2.13.1")
    check_torch(installed="2.13.0", built="2.13.0+cpu")
    with pytest.raises(InstallError, match=r"built against torch 2\.13\.0\+cpu, but torch 2\.14\.1 .*torch==2\.13\.\*"):
        check_torch(installed="2.14.1", built="2.13.0+cpu")


def test_source_checkout_without_install_says_how_to_install(tmp_path):
    """The package run from the sources alone (no compiled parts beside it) names the fix."""
    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "import importlib.util, emaseg.installed as i\n"
            "assert importlib.util.find_spec('emaseg._build_info') is None\n"
            "try:\n    i.install_dir()\nexcept i.InstallError as e:\n    print(e)\n")
    # A copy of python/emaseg alone, so the editable install's finder does not map it.
    shutil.copytree(REPO / "python" / "emaseg", tmp_path / "src" / "emaseg",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    result = run(sys.executable, "-S", "-c", code, tmp_path / "src", cwd=tmp_path)
    assert "pip install ." in result.stdout, result.stdout
