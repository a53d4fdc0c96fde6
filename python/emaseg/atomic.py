"""The one way emaseg writes an output file: a temporary name beside it, renamed when complete.

    with atomic_open("out.json", "w") as f:      # Python I/O
        f.write(text)
    with atomic_path("out.mp4", suffix=".mp4") as tmp:   # a library that wants a path
        write_video(tmp)
    write_atomic("out.pth", data)

The temporary file is `.NAME.<random>.tmp[SUFFIX]` in the destination folder (same file system,
so the rename is atomic; hidden, and matched by no loader pattern). On success it is fsynced,
given the usual file mode (umask applied; mkstemp makes 0600) and renamed over NAME. On any
error, KeyboardInterrupt and SystemExit included, it is removed and NAME is left as it was.
Every OSError on the way is raised as `WriteError`, whose text is the one line a user needs:
"cannot write PATH: REASON".
"""
from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterable, Iterator


class WriteError(OSError):
    """An output file could not be written (or was refused); nothing is left under its name."""

    def __init__(self, path: str | os.PathLike, reason: str, code: int | None = None) -> None:
        super().__init__(code, reason, str(path))
        self.path = Path(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"

    @classmethod
    def from_os_error(cls, path: str | os.PathLike, error: OSError) -> "WriteError":
        if isinstance(error, WriteError):
            return error
        return cls(path, error.strerror or str(error), error.errno)


def _current_umask() -> int:
    # os.umask can only be read by setting it; doing that once at import keeps it out of the
    # writer threads (synthetic data), where a set-then-restore would race with file creation.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def temp_prefix(path: str | os.PathLike) -> str:
    """The name every temporary file for `path` starts with (for tests and clean-up checks)."""
    return f".{Path(path).name}."


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Makes the rename durable; not every file system allows fsync on a folder, so best effort."""
    try:
        _fsync(str(folder))
    except OSError:
        pass


@contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it over `path` when the block completes.

    `suffix` ends the temporary name, for writers that choose the format by extension (video).
    """
    path = Path(path)
    folder = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp" + suffix, dir=folder)
        os.close(fd)
    except OSError as e:
        raise WriteError.from_os_error(path, e) from e
    try:
        yield Path(tmp)
        _fsync(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise WriteError.from_os_error(path, e) from e
        raise
    _fsync_dir(folder)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """`open(path, mode)` on a temporary file that becomes `path` when the block completes."""
    if not mode.startswith(("w", "x")):
        raise ValueError(f"atomic_open writes a new file: mode {mode!r} must start with 'w' or 'x'")
    with atomic_path(path) as tmp:
        # open() is looked up in this module's globals, which lets tests inject a failing writer.
        with open(tmp, mode.replace("x", "w"), **kwargs) as f:
            yield f


def write_atomic(path: str | os.PathLike, data: bytes | bytearray | memoryview | str,
                 encoding: str = "utf-8") -> None:
    """Writes `data` (bytes, or text encoded with `encoding`) to `path` atomically."""
    if isinstance(data, str):
        data = data.encode(encoding)
    with atomic_open(path, "wb") as f:
        f.write(data)


def check_output(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Refuses, before any work is done, an output that cannot be written or would replace an input.

    Raises WriteError naming `path` and the reason: its folder is missing, not a folder or not
    writable, `path` is a folder, or it is the same file as one of `inputs` (any spelling:
    relative, symlink, hard link).
    """
    path = Path(path)
    folder = path.parent
    if not folder.exists():
        raise WriteError(path, f"folder {folder} does not exist", errno.ENOENT)
    if not folder.is_dir():
        raise WriteError(path, f"{folder} is not a folder", errno.ENOTDIR)
    if path.is_dir():
        raise WriteError(path, "it is a folder", errno.EISDIR)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise WriteError(path, f"folder {folder} is not writable", errno.EACCES)
    for source in inputs:  # a missing input cannot be overwritten; its reader reports it
        if source is not None and os.path.exists(source) and same_file(path, source):
            raise WriteError(path, f"it is the input file {source}; refusing to overwrite an input "
                                   f"(choose another output name)", errno.EEXIST)
    return path


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: samefile when both exist (hard links, symlinks), else
    the resolved paths."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()
