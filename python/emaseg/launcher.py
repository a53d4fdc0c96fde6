"""The `ema_seg` command that pip puts on PATH ([project.scripts]): it checks the installed torch,
then replaces itself with the C++ CLI the package ships (emaseg/bin/ema_seg), so signals, exit codes
and streams are the binary's own. Only emaseg.installed is imported: no torch, no start-up cost."""
from __future__ import annotations

import os
import sys

from .installed import InstallError, check_torch, install_dir


def main() -> None:
    try:
        check_torch()
        binary = install_dir() / "bin" / "ema_seg"
    except InstallError as e:
        sys.exit(f"ema_seg: error: {e}")
    if not os.access(binary, os.X_OK):
        sys.exit(f"ema_seg: error: the installed CLI {binary} is missing; reinstall emaseg")
    os.execv(binary, [str(binary), *sys.argv[1:]])


if __name__ == "__main__":
    main()
