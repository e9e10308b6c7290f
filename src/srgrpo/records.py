"""What makes a long run resumable: an append-only record cache and a pinned-arguments file.

Every finished unit of work is appended to a JSONL file at once, so a killed run loses at most the
unit in flight; `run.json` pins the arguments that decide the numbers, so a folder never mixes two runs.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Iterable


class RunCache:
    """Append-only JSONL of {"stage", "key", "value"} records. A line cut short by a kill is ignored."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[tuple[str, str], object] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                    self.records[(record["stage"], record["key"])] = record["value"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
        self._file = path.open("a", encoding="utf-8")

    def get(self, stage: str, key: str):
        return self.records.get((stage, key))

    def has(self, stage: str, key: str) -> bool:
        return (stage, key) in self.records

    def put(self, stage: str, key: str, value) -> None:
        self.records[(stage, key)] = value
        self._file.write(json.dumps({"stage": stage, "key": key, "value": value}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def json_float(x: float):
    """A float for JSON: NaN and inf become null."""
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def nan_if_none(x) -> float:
    return math.nan if x is None else float(x)


def prepare_output_dir(output_dir: Path, run_config: dict, overwrite: bool, output_files: Iterable[str],
                       extra_dirs: Iterable[str] = ()) -> None:
    """Create the folder; refuse to mix two different runs in it (unless `overwrite`, which deletes
    the run's `output_files` and `extra_dirs` first)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    run_file = output_dir / "run.json"
    if overwrite:
        for name in output_files:
            (output_dir / name).unlink(missing_ok=True)
        for name in extra_dirs:
            shutil.rmtree(output_dir / name, ignore_errors=True)
    elif run_file.is_file():
        previous = json.loads(run_file.read_text())
        if previous != run_config:
            changed = sorted(k for k in set(previous) | set(run_config) if previous.get(k) != run_config.get(k))
            raise ValueError(
                f"{output_dir} holds a run with different arguments ({', '.join(changed)} differ); "
                "use another --output-dir, or --overwrite to start afresh"
            )
    run_file.write_text(json.dumps(run_config, indent=2))
