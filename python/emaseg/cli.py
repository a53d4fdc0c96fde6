"""What the command-line scripts share: reading their arguments the same way."""
from __future__ import annotations

import re


def parse_size(text: str, flag: str = "--size") -> tuple[int, int]:
    """"512x1024" (or "512X1024", spaces allowed) -> (512, 1024). ValueError, with a one-line
    message naming `flag`, for anything else; each script adds its own bounds."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise ValueError(f"{flag} expects HxW (height x width) like 512x1024, got {text!r}")
    return int(m.group(1)), int(m.group(2))
