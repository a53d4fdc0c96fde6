"""What the command-line scripts share: reading their arguments and ending the same way."""
from __future__ import annotations

import argparse
import re
import sys
from typing import Callable


def parse_size(text: str, flag: str = "--size") -> tuple[int, int]:
    """"512x1024" (or "512X1024", spaces allowed) -> (512, 1024). ValueError, with a one-line
    message naming `flag`, for anything else; each script adds its own bounds."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise ValueError(f"{flag} expects HxW (height x width) like 512x1024, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an int >= minimum, so a bad value is a usage error (exit 2) naming the
    flag, never a value that silently means something else."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def printable(text: str) -> str:
    """`text` with terminal control characters (C0 but line breaks and tabs, DEL, C1) escaped as
    \\xNN: a crafted file name or URL in a message cannot clear the screen or retitle the terminal.
    The C++ runtime's `emaseg::printable` does the same to its messages."""
    return "".join(f"\\x{ord(c):02x}" if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F else c
                   for c in text)


def run_tool(prog: str, main: Callable[[], object], *, errors: tuple[type[BaseException], ...],
             usage_errors: tuple[type[BaseException], ...] = (), describe: Callable[[BaseException], str] = str,
             interrupted: str = "interrupted", cleanup: Callable[[], None] | None = None) -> int:
    """A tool's exit status: `main`'s own when it returns an int (0 otherwise). A user error is
    one line "PROG: error: ..." and no traceback: 2 for `usage_errors`, 1 for `errors`; Ctrl-C
    prints "PROG: <interrupted>" and gives 130. `cleanup` runs however main ends."""
    try:
        status = main()
        return status if isinstance(status, int) else 0
    except usage_errors as e:
        print(f"{prog}: error: {printable(describe(e))}", file=sys.stderr)
        return 2
    except errors as e:
        print(f"{prog}: error: {printable(describe(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return 130
    finally:
        if cleanup is not None:
            cleanup()
