"""The command line: ``python -m skcrossmodal demo``."""

from __future__ import annotations

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="skcrossmodal", description="skcrossmodal command line."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="fit the shared space on bundled real data and report results"
    )
    demo.add_argument(
        "--figure",
        default="skcrossmodal-demo.png",
        help="where to write the figure (default: %(default)s)",
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed for the split")
    demo.add_argument(
        "--dataset",
        choices=("emoji", "speech"),
        default="emoji",
        help="emoji: text + image (default); speech: audio + text, and audio + "
        "text + image with scikit-learn's digits (prints a table, no figure)",
    )
    args = parser.parse_args(argv)

    if args.dataset == "speech":
        from ._demo_speech import run_speech_demo

        return run_speech_demo(seed=args.seed)

    from ._demo import run_demo

    return run_demo(figure_path=args.figure, seed=args.seed)


if __name__ == "__main__":
    sys.exit(main())
