"""Records on disk, shared by the apps: what makes a long run resumable, and JSON's missing NaN.

- `RunCache`: every finished unit of work is appended to a JSONL file at once, so a killed run loses
  at most the unit in flight;
- `prepare_output_dir`: `run.json` pins the arguments that decide the numbers, so a folder never
  mixes two runs, and records srgrpo's version and the versions of what the run uses (features,
  datasets, graders, the benchmark protocol: `run_versions`). A resumed run whose code defines one
  of them differently is refused, naming what changed, unless the runner recomputes that kind of
  entry itself where it is stale (RewardBench's per-item feature cache: `refreshed`); a kind that
  is recomputed from the cache on every run (Best-of-N's grading, RewardBench's protocol) is
  recorded as it is now, never refused. srgrpo's own version is recorded, not pinned: a release
  that changes no definition keeps its runs resumable;
- `json_float` / `nan_if_none`: NaN and inf are written as null and read back as NaN;
- `read_jsonl`: an appended JSONL file, less a line cut short by a kill;
- `write_jsonl_atomic`: a JSONL file replaced whole, so a crash leaves the old file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Iterable, Mapping

from srgrpo.version import __version__


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


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The rows of a JSONL file that is appended to as a run goes ([] if there is none yet); a line
    that does not parse, cut when the writer was killed, is skipped, so the rest still reads."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Write `records` as JSONL in place of `path`, atomically: a crash leaves the old file whole."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, path)


VERSIONS_KEY = "versions"  # where run.json keeps the versions (run_versions)


def run_versions(**groups: Mapping[str, int]) -> dict:
    """The versions a run records: srgrpo's, and per kind ({"features": {name: version}, "datasets":
    ..., "graders": ..., "protocol": ...}) those of the entries it uses. Empty kinds are left out."""
    return {"srgrpo": __version__, **{kind: dict(v) for kind, v in groups.items() if v}}


def _singular(kind: str) -> str:
    return kind[:-1] if kind.endswith("s") else kind


def changed_versions(previous: Mapping | None, current: Mapping) -> dict[str, dict[str, tuple[int, int]]]:
    """{kind: {name: (previous version, current version)}} for the entries both runs use whose
    version differs. A run.json from before versions were recorded counts as version 1 throughout
    (every entry was version 1 then); an entry the earlier run did not use is not a change."""
    changed: dict[str, dict[str, tuple[int, int]]] = {}
    for kind, names in current.items():
        if not isinstance(names, Mapping):
            continue  # "srgrpo": a plain string
        before = (previous or {}).get(kind)
        for name, version in names.items():
            old = 1 if previous is None or before is None else before.get(name, version)
            if old != version:
                changed.setdefault(kind, {})[name] = (old, version)
    return changed


def describe_changes(changed: Mapping[str, Mapping[str, tuple[int, int]]]) -> str:
    """'feature stable_rank 1 -> 2, grader math 1 -> 3' for a message."""
    return ", ".join(f"{_singular(kind)} {name} {old} -> {new}"
                     for kind, names in changed.items() for name, (old, new) in names.items())


def prepare_output_dir(output_dir: Path, run_config: dict, overwrite: bool, output_files: Iterable[str],
                       extra_dirs: Iterable[str] = (), versions: Mapping | None = None, exempt: Iterable[str] = (),
                       unpinned: Mapping[str, Iterable[str]] | None = None) -> dict:
    """Create the folder; refuse to mix two different runs in it (unless `overwrite`, which deletes
    the run's `output_files` and `extra_dirs` first). Writes run.json: `run_config` plus `versions`
    (`run_versions(...)`) under "versions".

    A resumed run is refused when an argument differs, or when an entry's version differs in a kind
    not in `exempt`: the kinds whose stale entries the runner recomputes itself (features), or which
    are recomputed from the cache on every run (graders, protocol). `unpinned` ({key: names}) lists sub-keys of
    a run_config entry that an earlier srgrpo pinned and this one no longer does (run-time options
    such as batch_size): they are left out of the comparison, so such a folder resumes.
    Returns the version changes found ({kind: {name: (old, new)}}), refused or not."""
    output_dir.mkdir(parents=True, exist_ok=True)
    run_file = output_dir / "run.json"
    versions = dict(versions) if versions is not None else None
    changed: dict = {}
    if overwrite:
        for name in output_files:
            (output_dir / name).unlink(missing_ok=True)
        for name in extra_dirs:
            shutil.rmtree(output_dir / name, ignore_errors=True)
    elif run_file.is_file():
        previous = json.loads(run_file.read_text())
        previous_versions = previous.pop(VERSIONS_KEY, None)
        for key, names in (unpinned or {}).items():
            if isinstance(previous.get(key), dict) and isinstance(run_config.get(key), dict):
                previous[key] = {k: v for k, v in previous[key].items()
                                 if k in run_config[key] or k not in set(names)}
        if previous != run_config:
            changed_keys = sorted(k for k in set(previous) | set(run_config) if previous.get(k) != run_config.get(k))
            raise ValueError(
                f"{output_dir} holds a run with different arguments ({', '.join(changed_keys)} differ); "
                "use another --output-dir, or --overwrite to start afresh"
            )
        if versions is not None:
            changed = changed_versions(previous_versions, versions)
            refused = {kind: names for kind, names in changed.items() if kind not in set(exempt)}
            if refused:
                raise ValueError(
                    f"{output_dir} holds a run made with other definitions ({describe_changes(refused)}): its "
                    "cached values would mix with new ones; use another --output-dir, or --overwrite to start afresh"
                )
            earlier = (previous_versions or {}).get("srgrpo")
            if earlier is not None and earlier != versions["srgrpo"]:
                history = [*(previous_versions or {}).get("srgrpo_earlier", []), earlier]
                versions["srgrpo_earlier"] = list(dict.fromkeys(history))  # the versions that wrote here before
    run_file.write_text(json.dumps({**run_config, **({VERSIONS_KEY: versions} if versions is not None else {})},
                                   indent=2))
    return changed
