"""The `score` command's I/O: reading (prompt, response) JSONL and writing results one line at a time.

A bad line never stops the others: it becomes an `InputRow` whose `error` names the line, and the
caller reports it. Blank lines are skipped but keep their numbers, so messages point at the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srgrpo.records import write_jsonl_atomic
from srgrpo.text import check_pair


@dataclass
class InputRow:
    line: int  # 1-based line number in the file
    id: Any  # the row's "id", or its line number
    prompt: Any = None
    response: Any = None
    error: str | None = None


def read_pairs(path: str | os.PathLike) -> list[InputRow]:
    """Every non-blank line of a JSONL file of {"prompt", "response", optional "id"} objects."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    rows = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            rows.append(_parse_line(line, number, path))
    return rows


def _parse_line(line: str, number: int, path: Path) -> InputRow:
    where = f"{path}:{number}"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        return InputRow(number, number, error=f"{where}: malformed JSON ({err.msg.removesuffix(' at')} at column {err.colno})")
    if not isinstance(obj, dict):
        return InputRow(number, number, error=f"{where}: expected a JSON object, got {type(obj).__name__}")
    row_id = obj.get("id", number)
    missing = [k for k in ("prompt", "response") if k not in obj]
    if missing:
        return InputRow(number, row_id, error=f"{where}: missing field(s) {', '.join(missing)}")
    try:
        check_pair(obj["prompt"], obj["response"], where)
    except TypeError as err:
        return InputRow(number, row_id, error=str(err))
    return InputRow(number, row_id, obj["prompt"], obj["response"])


class JsonlWriter:
    """Appends one JSON object per line and flushes, so a crash keeps every line already written."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def rewrite_sorted(path: str | os.PathLike, key) -> None:
    """Rewrite a finished JSONL file in `key` order, atomically (a crash leaves the old file)."""
    path = Path(path)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    write_jsonl_atomic(path, sorted(records, key=key))
