#!/usr/bin/env python3
"""Export a checkpoint to one self-describing model file (docs/model_file_format.md).

    python python/export.py --checkpoint CKPT --output models/NAME.pt [--mode whole|slide]
        [--size HxW | --short-side N] [--flip] [--dtype float32|float16|bfloat16]
        [--device cpu|cuda] [--optimize]
    python python/export.py --checkpoint CKPT --output models/NAME.pt2 [same options]
        [--aspect-ratios W:H,...] [--network-sizes HxW,...] [--frame-sizes HxW,...] [--frame-size HxW]
        [--no-any-size] [--add-to models/NAME.pt2]
    python python/export.py --checkpoint CKPT --output models/NAME.pt2 --dtype int8 --calibration DIR [--frame-size HxW]
    python python/export.py --inspect models/NAME.pt

The output's suffix picks the format: .pt is TorchScript (loads in any LibTorch app, any CPU);
.pt2 is an AOTInductor package (torch.export, compiled ahead of time: faster, but tied to this
CPU's instruction set, or the GPU, and to this torch version; the runtime checks both). A .pt2
holds the network compiled for fixed network input sizes, the fast code, and once for any size;
the exact resize in and the labels out run outside it at any frame size. The network input size
follows from the frame's aspect ratio alone (keep-ratio test scale): --aspect-ratios 16:9,4:3
compiles the sizes of every 16:9 and 4:3 camera, --network-sizes names them directly,
--frame-sizes by a frame size; --frame-size HxW compiles only that frame's size, without the
any-size model (--no-any-size likewise for the others). --add-to PACKAGE keeps the models of an
existing package of this checkpoint and compiles only the sizes it lacks (--output may be the
same file: it is replaced only once the new package passed its gate).
--dtype int8 (.pt2, CPU): post-training quantisation calibrated on the images of DIR (searched
recursively, e.g. a dataset's val folder; a few dozen frames like the deployed ones), gated on
the DIR images it held out: labels at least 97% equal to float32's on average.

Exit status: 0 written, 1 error (one line on stderr, nothing written: a bad or missing file, an
output that cannot be written or would replace the checkpoint, a full disk), 2 bad flags,
130 interrupted (nothing written).

The file is only written after a parity gate: the saved-then-reloaded file must give the eager
model's labels exactly, and its scores within tolerance, on frames of several odd sizes.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from emaseg import cli  # noqa: E402
from emaseg.export import ExportedFileError, ExportError, ResizePolicy, export_model, read_metadata  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="emaseg checkpoint (.pth)")
    p.add_argument("--output", help="file to write: .pt (TorchScript) or .pt2 (AOTInductor package)")
    p.add_argument("--mode", choices=("whole", "slide"), help="inference mode (default: the config's)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--size", help="resize every frame to HxW before the network")
    g.add_argument("--short-side", type=int, help="resize so that the short side is N (keeps ratio)")
    g.add_argument("--no-resize", action="store_true", help="run the network at the frame's own size")
    p.add_argument("--flip", action="store_true", help="average with the mirrored frame")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16", "int8"))
    p.add_argument("--calibration", metavar="DIR", help="--dtype int8: the folder of calibration images")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (where the parity gate runs)")
    p.add_argument("--optimize", action="store_true", help="freeze the module (folds BN, inlines constants)")
    p.add_argument("--frame-size", help=".pt2 only: compile only for frames like HxW (their network size), "
                                        "without the any-size model")
    p.add_argument("--frame-sizes", metavar="HxW,...",
                   help=".pt2 only: compile the network for the network size of each of these frame sizes")
    p.add_argument("--network-sizes", metavar="HxW,...",
                   help=".pt2 only: compile the network for exactly these network input sizes")
    p.add_argument("--aspect-ratios", metavar="W:H,...",
                   help=".pt2 only: compile the network for the network size of frames of these aspect "
                        "ratios (landscape 16:9, portrait 9:16)")
    p.add_argument("--no-any-size", action="store_true",
                   help=".pt2 only: leave out the any-size model (frames of other network sizes are refused)")
    p.add_argument("--add-to", metavar="PACKAGE",
                   help=".pt2 only: keep this package's models and compile only the sizes it lacks")
    p.add_argument("--inspect", metavar="FILE", help="print an exported file's metadata and exit")
    return p


class UsageError(Exception):
    """A bad command line: one line on stderr, exit status 2 (as argparse's own errors)."""


def parse_size(text: str, flag: str = "--size") -> tuple[int, int]:
    try:
        return cli.parse_size(text, flag)
    except ValueError as e:
        raise UsageError(str(e)) from None


def parse_sizes(text: str | None, flag: str) -> tuple[tuple[int, int], ...]:
    return tuple(parse_size(part.strip(), flag) for part in text.split(",")) if text is not None else ()


def parse_ratio(text: str) -> tuple[int, int]:
    """ "16:9" -> (16, 9), W:H."""
    parts = text.split(":")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise UsageError(f"--aspect-ratios: expected W:H with positive integers, e.g. 16:9, got {text!r}")
    return int(parts[0]), int(parts[1])


def main(args: argparse.Namespace) -> int:
    if args.inspect:
        print(json.dumps(read_metadata(args.inspect), indent=2))
        return 0
    if not args.checkpoint or not args.output:
        raise UsageError("--checkpoint and --output are required (or --inspect FILE)")
    resize = None
    if args.size:
        h, w = parse_size(args.size)
        resize = ResizePolicy("size", size=(h, w))
    elif args.short_side is not None:
        resize = ResizePolicy("short_side", short_side=args.short_side)
    elif args.no_resize:
        resize = ResizePolicy("none")
    # `is not None`: an empty value is a bad size, not a missing flag.
    frame_size = parse_size(args.frame_size, "--frame-size") if args.frame_size is not None else None
    frame_sizes = parse_sizes(args.frame_sizes, "--frame-sizes")
    network_sizes = parse_sizes(args.network_sizes, "--network-sizes")
    aspect_ratios = tuple(parse_ratio(text.strip()) for text in args.aspect_ratios.split(",")) \
        if args.aspect_ratios is not None else ()
    report = export_model(args.checkpoint, args.output, mode=args.mode, resize=resize, flip=args.flip,
                          dtype=args.dtype, device=args.device, optimize=args.optimize, frame_size=frame_size,
                          calibration=args.calibration, frame_sizes=frame_sizes, network_sizes=network_sizes,
                          aspect_ratios=aspect_ratios, any_size=not args.no_any_size, add_to=args.add_to)
    worst = max(r["max_abs_score_diff"] for r in report.parity)
    print(f"wrote {report.output} ({report.metadata['config_name']}, {report.metadata['dtype']}, "
          f"mode {report.metadata['mode']}, resize {report.metadata['resize']['type']})")
    if report.output.suffix == ".pt2":
        sizes = ", ".join(report.metadata["network_models"]) or "none"
        print(f"network compiled for the network input sizes {sizes}"
              + (", and for any other size" if report.metadata["any_size"] else " (no any-size model: frames "
                 "of other network sizes are refused)"))
    ties = sum(r.get("near_ties", 0) for r in report.parity)
    same = "labels identical" + (f" but for {ties} near-tie pixel(s)" if ties else "")
    if report.output.suffix == ".pt2" and args.dtype != "float32":  # gated against float32
        same = f"at least {min(r['agreement'] for r in report.parity):.2%} of labels equal to float32's"
    if args.dtype == "int8":
        mean = sum(r["agreement"] for r in report.parity) / len(report.parity)
        same = (f"on {len(report.parity)} held-out calibration images {mean:.2%} of labels equal to float32's "
                f"(worst {min(r['agreement'] for r in report.parity):.2%})")
    print(f"parity: {len(report.parity)} batches, {same}, max score diff {worst:.2e}; "
          f"{report.seconds_per_frame * 1000:.1f} ms per frame on {args.device}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_tool("export", lambda: main(get_args_parser().parse_args()), usage_errors=(UsageError,),
                          errors=(ExportError, ExportedFileError, OSError),
                          interrupted="interrupted; nothing was written"))
