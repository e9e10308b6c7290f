"""What every command shares: model and scoring arguments, loading the model.

Imported by the command modules; imports none of them. (What the entry shows itself, the exit-status
convention included, is in `srgrpo.cli`, which stays light for `srgrpo --help`.)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from srgrpo.models import load_model
from srgrpo.options import FEATURE, RUNTIME, SCORE, ScoringOptions, option_kind


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=None,
                       help="Hugging Face model id, local folder or .gguf file (default: embedded SmolLM2-135M-Instruct)")
    group.add_argument("--dtype", default="auto",
                       help="model dtype: auto (the default: float32 on CPU, bfloat16 on GPU), float32, bfloat16, float16")
    group.add_argument("--device", default="auto", help="auto (GPU if present; the default), cpu, cuda, cuda:1, ...")
    group.add_argument("--cache-dir", default=None,
                       help="where the embedded model is converted to (default: $SRGRPO_CACHE_DIR or ~/.cache/srgrpo)")


DATA_DIR_HELP = ("folder holding eval/ (math500_test.jsonl, mmlu.zip, mmlu_redux.jsonl, olympiadbench_test.jsonl, "
                 "amc23_test.jsonl) (default: $SRGRPO_DATA_DIR, else ~/.cache/srgrpo/data; a file missing there comes "
                 "from the Hugging Face hub when it is reachable)")


# The help's heading of each kind of ScoringOptions field (srgrpo.options).
OPTION_GROUPS = {
    SCORE: "scoring options (what a score is: a run is pinned to them)",
    FEATURE: "feature parameters (each read by one feature; they pin a run that uses it)",
    RUNTIME: "run-time options (how the work runs; never pin a run)",
}


def add_scoring_arguments(parser: argparse.ArgumentParser, default_notes: dict[str, str] | None = None) -> None:
    """One flag per ScoringOptions field, so the options and their help live in one place; grouped in
    the help by kind (score-defining, feature parameter, run-time). `default_notes` (field -> text):
    fields whose default the command decides later (the flag defaults to None and its help ends with
    the text instead of the dataclass default)."""
    groups = {kind: parser.add_argument_group(title) for kind, title in OPTION_GROUPS.items()}
    notes = default_notes or {}
    for f in dataclasses.fields(ScoringOptions):
        groups[option_kind(f)].add_argument(
            "--" + f.name.replace("_", "-"),
            type={"int": int, "float": float}.get(f.type, str),
            default=None if f.name in notes else f.default,
            choices=f.metadata.get("choices"),
            help=f.metadata["help"] + (f" (default: {notes[f.name]})" if f.name in notes else " (default: %(default)s)"),
        )


def scoring_options(args: argparse.Namespace, **defaults) -> ScoringOptions:
    """The ScoringOptions the flags name; a flag left at None takes `defaults`' value, else the field's default.
    A value ScoringOptions refuses is a usage error naming the flag (--batch-size, not batch_size)."""
    values = {}
    for f in dataclasses.fields(ScoringOptions):
        value = getattr(args, f.name)
        values[f.name] = defaults.get(f.name, f.default) if value is None else value
    try:
        return ScoringOptions(**values)
    except ValueError as err:
        field = next((f.name for f in dataclasses.fields(ScoringOptions) if str(err).startswith(f.name + " ")), None)
        if field is None:
            raise
        raise ValueError("--" + field.replace("_", "-") + str(err)[len(field):]) from None


def check_at_least(args: argparse.Namespace, **minimums: int) -> None:
    """Refuse a numeric flag below its minimum (None: not given), named as typed: --limit must be at least 1."""
    for name, minimum in minimums.items():
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise ValueError(f"--{name.replace('_', '-')} must be at least {minimum}, got {value}")


def load_model_from_args(args):
    """The model and tokenizer the model arguments name."""
    print(f"loading model {args.model or '(embedded SmolLM2-135M-Instruct)'} ...", file=sys.stderr)
    return load_model(args.model, dtype=args.dtype, device=args.device, cache_dir=args.cache_dir, verbose=True)


def parse_layers(text: str | None, num_layers: int) -> list[int]:
    """'all' -> every hidden_states index 0..L; '0,5,-1' -> those indices (negatives from the end)."""
    if not text:
        return []
    if text.strip() == "all":
        return list(range(num_layers + 1))
    try:
        layers = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--layers must be 'all' or comma-separated integers, got {text!r}") from None
    n_states = num_layers + 1
    bad = [k for k in layers if not -n_states <= k < n_states]
    if bad:
        raise ValueError(f"--layers {bad} out of range for a model with {num_layers} layers (0..{num_layers})")
    return sorted({k % n_states for k in layers})
