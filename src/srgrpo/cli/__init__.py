"""The `srgrpo` command line: one module per command, each a thin layer over the Python API.

`COMMANDS` lists them in the order `srgrpo --help` shows; each module has `add_parser(sub)`, and
shared arguments live in `srgrpo.cli.common`, which imports none of the command modules.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from srgrpo.cli.common import DESCRIPTION, HelpFormatter

COMMANDS = ("score", "rewardbench", "demo", "bon", "train", "evaluate", "compare", "serve")


def build_parser() -> argparse.ArgumentParser:
    from srgrpo.version import __version__

    parser = argparse.ArgumentParser(prog="srgrpo", description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"srgrpo.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from srgrpo.models import ModelLoadError

    try:
        return args.func(args)
    except (ModelLoadError, FileNotFoundError, ValueError) as err:
        print(f"srgrpo {args.command}: error: {err}", file=sys.stderr)
        return 2
