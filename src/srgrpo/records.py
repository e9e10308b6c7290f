"""Records on disk, shared by the apps: what makes a long run resumable, and JSON's missing NaN.

- `RunCache`: every finished unit of work is appended to a JSONL file at once, so a killed run loses
  at most the unit in flight;
- `prepare_output_dir`: `run.json` pins the arguments that decide the numbers, so a folder never
  mixes two runs;
- `json_float` / `nan_if_none`: NaN and inf are written as null and read back as NaN;
- `write_jsonl_atomic`: a JSONL file replaced whole, so a crash leaves the old file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Iterable


class RunCache:
    """Append-only JSONL of {"stage", "key", "value"} records. A line cut short by a kill is ignored."""

    def __init__(self, path: Path, readonly: bool = False):
        self.path = path
        self.records: dict[tuple[str, str], object] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                    self.records[(record["stage"], record["key"])] = record["value"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
        # A helper process of a distributed run reads the cache but leaves writing to the main one.
        self._file = None if readonly else path.open("a", encoding="utf-8")

    def get(self, stage: str, key: str):
        return self.records.get((stage, key))

    def has(self, stage: str, key: str) -> bool:
        return (stage, key) in self.records

    def put(self, stage: str, key: str, value) -> None:
        self.records[(stage, key)] = value
        self._file.write(json.dumps({"stage": stage, "key": key, "value": value}) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def json_float(x: float):
    """A float for JSON: NaN and inf (and anything that is not a number) become null."""
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def nan_if_none(x) -> float:
    """The inverse of json_float: null (a value that could not be computed) reads back as NaN."""
    return math.nan if x is None else float(x)


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Write `records` as JSONL in place of `path`, atomically: a crash leaves the old file whole."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, path)


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
