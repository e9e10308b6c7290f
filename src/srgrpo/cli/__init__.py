"""The `srgrpo` command line: one module per command, each a thin layer over the Python API.

`COMMANDS` lists them in the order `srgrpo --help` shows; each module has `add_parser(sub)`, and
shared arguments live in `srgrpo.cli.common`, which imports none of the command modules.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from srgrpo.cli.common import DESCRIPTION, EXIT_HELP, EXIT_USAGE, HelpFormatter

COMMANDS = ("score", "rewardbench", "demo", "bon", "train", "evaluate", "compare", "serve")


def build_parser() -> argparse.ArgumentParser:
    from srgrpo.version import __version__

    parser = argparse.ArgumentParser(prog="srgrpo", description=DESCRIPTION, epilog=EXIT_HELP,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"srgrpo.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; its exit status follows one convention (srgrpo.cli.common): EXIT_OK, EXIT_ROWS_FAILED
    (the command returns it: some rows failed, the rest were written), EXIT_USAGE (argparse's own errors,
    and every error below: a flag's value, a missing or unreadable file, bad data)."""
    args = build_parser().parse_args(argv)
    from srgrpo.models import ModelLoadError

    try:
        return args.func(args)
    except (ModelLoadError, ValueError, *(kind for kind, _ in OS_ERRORS)) as err:
        print(f"srgrpo {args.command}: error: {usage_message(err)}", file=sys.stderr)
        return EXIT_USAGE


def usage_message(err: Exception) -> str:
    """The error's own message; for an OSError raised by Python itself, what went wrong with which path
    (not "[Errno 2] No such file or directory: 'x'")."""
    if isinstance(err, OSError) and err.filename is not None:
        what = next(text for kind, text in OS_ERRORS if isinstance(err, kind))
        return f"{what}: {err.filename}"
    return str(err)


OS_ERRORS = ((FileNotFoundError, "no such file or folder"), (IsADirectoryError, "a folder, not a file"),
             (NotADirectoryError, "not a folder"), (PermissionError, "permission denied"))
