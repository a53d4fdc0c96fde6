#!/usr/bin/env python3
"""Convert an mmsegmentation EMANet checkpoint into an emaseg checkpoint.

    python scripts/convert_mmseg.py IN.pth OUT.pth [--config NAME | --recipe 512x1024|769x769]

Without --config the architecture is read off the weights; --recipe picks that recipe's
align_corners, test mode, crop and stride. With --config the weights are checked against it.

Exit status: 0 written; 1 error (one line on stderr, OUT not written or left as it was: a bad
input, an output folder that is missing, OUT equal to IN, a full disk); 2 bad flags; 130
interrupted.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from emaseg import cli  # noqa: E402
from emaseg.config import CONFIGS  # noqa: E402
from emaseg.convert import RECIPES, ConversionError, convert  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="mmsegmentation checkpoint (.pth)")
    parser.add_argument("dst", help="emaseg checkpoint to write (.pth)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--config", help=f"check against a named config ({', '.join(sorted(CONFIGS))})")
    group.add_argument("--recipe", default="512x1024", choices=RECIPES,
                       help="recipe for what the weights do not hold (default 512x1024)")
    args = parser.parse_args(argv)

    def run() -> None:
        cfg = convert(args.src, args.dst, config=args.config, recipe=args.recipe)
        print(f"wrote {args.dst} (config {cfg.name}, {cfg.model.num_classes} classes)")

    return cli.run_tool("convert_mmseg", run, errors=(ConversionError, OSError),
                        interrupted=f"interrupted; {args.dst} was not written")


if __name__ == "__main__":
    sys.exit(main())
