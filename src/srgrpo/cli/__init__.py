"""The `srgrpo` command line: one module per command, each a thin layer over the Python API.

`COMMANDS` lists them in the order `srgrpo --help` shows; each module has `add_parser(sub)`, and
shared arguments live in `srgrpo.cli.common`. This module also holds what the entry itself shows:
the description, and the exit-status convention every command follows.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NamedTuple

from srgrpo.registry import Registry
from srgrpo.version import __version__

DESCRIPTION = """\
Stable rank (SR = ||H||_F^2 / ||H||_2^2 of a response's last-layer hidden states) as a label-free
reward. The default model is the embedded SmolLM2-135M-Instruct; --model takes any Hugging Face id
or local folder."""

HelpFormatter = argparse.RawDescriptionHelpFormatter

# The exit status of every command (main maps errors to them): all went well; some rows failed but
# the rest were written; a usage or input error (a flag's value, a missing or unreadable file).
EXIT_OK, EXIT_ROWS_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_HELP = f"""\
exit status (every command):
  {EXIT_OK}  all went well
  {EXIT_ROWS_FAILED}  some rows failed (named on stderr and in the output), the rest were written
  {EXIT_USAGE}  a usage or input error: a flag's value, a missing or unreadable file, data with no usable row"""


class Command(NamedTuple):
    module: str  # its `add_parser(sub)` declares the sub-command's flags
    help: str  # the line `srgrpo --help` shows


# The command modules import torch, TRL, FastAPI ... (seconds), so `srgrpo --help` reads this table
# and imports none of them; `srgrpo COMMAND ...` imports only that command's module.
COMMANDS: Registry[Command] = Registry("command", {
    "score": Command("srgrpo.cli.score", "score (prompt, response) pairs from a JSONL file"),
    "rewardbench": Command("srgrpo.cli.rewardbench",
                           "evaluate stable rank and baselines as zero-shot reward models (RewardBench v1 and 2)"),
    "demo": Command("srgrpo.cli.demo",
                    "show which of two answers stable rank prefers, on example pairs shipped with srgrpo"),
    "bon": Command("srgrpo.cli.bon",
                   "Best-of-N decoding: sample N answers, keep the one with the highest stable rank, grade"),
    "train": Command("srgrpo.cli.train",
                     "SR-GRPO: GRPO + LoRA whose reward is the stable rank under the frozen base model"),
    "evaluate": Command("srgrpo.cli.evaluate",
                        "greedy pass@1 of a model (and LoRA adapters) on the paper's six benchmarks"),
    "compare": Command("srgrpo.cli.compare",
                       "Table 2 of several `srgrpo evaluate` runs, with paired bootstrap intervals to the base"),
    "serve": Command("srgrpo.cli.serve", "serve the stable-rank reward over HTTP (OpenRLHF remote reward model "
                     "protocol; verl 0.9 and TRL clients)"),
})


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of `srgrpo`; every command is listed, and `command` (if one of them) has its flags."""
    parser = argparse.ArgumentParser(prog="srgrpo", description=DESCRIPTION, epilog=EXIT_HELP,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, entry in COMMANDS.items():
        if name == command:
            importlib.import_module(entry.module).add_parser(sub)
        else:
            sub.add_parser(name, help=entry.help)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command; its exit status follows one convention (EXIT_HELP above): EXIT_OK, EXIT_ROWS_FAILED
    (the command returns it: some rows failed, the rest were written), EXIT_USAGE (argparse's own errors,
    and every error below: a flag's value, a missing or unreadable file, bad data)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)  # srgrpo's own flags take no value
    args = build_parser(command).parse_args(argv)
    from srgrpo.distributed import shutdown  # these import torch, which `srgrpo --help` and `--version` never need
    from srgrpo.models import ModelLoadError

    try:
        return args.func(args)
    except (ModelLoadError, ValueError, *(kind for kind, _ in OS_ERRORS)) as err:
        print(f"srgrpo {args.command}: error: {usage_message(err)}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        shutdown()


def usage_message(err: Exception) -> str:
    """The error's own message; for an OSError raised by Python itself, what went wrong with which path
    (not "[Errno 2] No such file or directory: 'x'")."""
    if isinstance(err, OSError) and err.filename is not None:
        what = next(text for kind, text in OS_ERRORS if isinstance(err, kind))
        return f"{what}: {err.filename}"
    return str(err)


OS_ERRORS = ((FileNotFoundError, "no such file or folder"), (IsADirectoryError, "a folder, not a file"),
             (NotADirectoryError, "not a folder"), (PermissionError, "permission denied"))
