"""The JSON metadata stored inside an exported file (`metadata.json`, see docs/model_file_format.md)."""
import json
import zipfile
from pathlib import Path
from typing import Any

FORMAT = "emaseg.torchscript"
ONNX_FORMAT = "emaseg.onnx"
FORMAT_VERSION = 1
EXTRA_FILE = "metadata.json"


class ExportedFileError(RuntimeError):
    """An exported file that is missing, not TorchScript, or lacks our metadata."""


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Reads the metadata straight from the archive, without loading the weights."""
    path = Path(path)
    if not path.is_file():
        raise ExportedFileError(f"{path}: no such file")
    if not zipfile.is_zipfile(path) and path.suffix == ".onnx":
        return _onnx_metadata(path)
    try:
        with zipfile.ZipFile(path) as z:
            entries = z.namelist()
            if any(n.endswith("/archive_format") and z.read(n) == b"pt2" for n in entries):
                return _package_metadata(path)
            if not any("/code/" in n for n in entries):  # torch.save files are zips too, without code
                raise ExportedFileError(f"{path}: not a TorchScript archive (a checkpoint? export it with python/export.py)")
            names = [n for n in entries if n.endswith(f"/extra/{EXTRA_FILE}")]
            if not names:
                raise ExportedFileError(f"{path}: TorchScript file without emaseg metadata (not exported by python/export.py?)")
            meta = json.loads(z.read(names[0]).decode("utf-8"))
    except zipfile.BadZipFile as e:
        raise ExportedFileError(f"{path}: not a TorchScript archive (truncated or corrupt?)") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportedFileError(f"{path}: its metadata is not valid JSON: {e}") from e
    return _checked(meta, path, FORMAT)


def _package_metadata(path: Path) -> dict[str, Any]:
    """An AOTInductor package's ema-seg metadata (recorded at compile time, see aoti.py)."""
    from .aoti import FORMAT as PACKAGE_FORMAT, FORMAT_VERSION as PACKAGE_FORMAT_VERSION, PackageError, \
        read_package_metadata

    try:
        tags = read_package_metadata(path)
        meta = json.loads(tags["emaseg_metadata"])
    except (PackageError, KeyError, json.JSONDecodeError) as e:
        raise ExportedFileError(f"{path}: a .pt2 package without valid emaseg metadata (not exported by "
                                f"python/export.py?)") from e
    return _checked(meta, path, PACKAGE_FORMAT, PACKAGE_FORMAT_VERSION)


def _onnx_metadata(path: Path) -> dict[str, Any]:
    """An ONNX file's ema-seg metadata (its metadata_props, see emaseg/onnx.py)."""
    from .. import onnx

    try:
        meta = onnx.read_metadata(path)
    except ValueError as e:
        raise ExportedFileError(str(e)) from None
    except json.JSONDecodeError as e:
        raise ExportedFileError(f"{path}: its metadata is not valid JSON: {e}") from e
    if meta is None:
        raise ExportedFileError(f"{path}: an ONNX file without emaseg metadata (not exported by python/export.py?)")
    return _checked(meta, path, ONNX_FORMAT)


def _checked(meta: Any, path: Path, expected_format: str, version: int = FORMAT_VERSION) -> dict[str, Any]:
    if not isinstance(meta, dict) or meta.get("format") != expected_format:
        raise ExportedFileError(f"{path}: metadata is not of format {expected_format}")
    if meta.get("format_version") != version:
        raise ExportedFileError(f"{path}: metadata version {meta.get('format_version')} is not supported "
                                f"(this emaseg reads version {version}); export it again with python/export.py")
    return meta


def encode(meta: dict[str, Any]) -> str:
    return json.dumps(meta, indent=1, sort_keys=True)
