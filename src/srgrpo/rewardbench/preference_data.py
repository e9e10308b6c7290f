"""Loading RewardBench-schema preference pairs from JSONL, Parquet, a folder, or a Hugging Face id.

Each row is {"prompt": str or [chat messages], "chosen": str, "rejected": str, "subset": optional,
"id": optional}. The source `sample` names the 24 pairs shipped with srgrpo (srgrpo/examples). A bad row never stops the others: it is skipped and named (file:line) in
`LoadedPairs.problems`, next to every adjustment made on the way (renamed duplicate ids, empty
responses), so a caller can print one list and know exactly what was evaluated.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from srgrpo.evaluation.datasets import SAMPLE, example_file
from srgrpo.text import check_pair

UNSPECIFIED_SUBSET = "unspecified"
REQUIRED_FIELDS = ("prompt", "chosen", "rejected")
FILE_SUFFIXES = (".jsonl", ".parquet")
_LOCAL_PREFIXES = ("./", "../", "/", "~")
_LOCAL_SUFFIXES = (".jsonl", ".parquet", ".json")
# The loader's version, recorded in run.json: bump it when a change alters the pairs read from the
# same data (their ids, prompts, responses or subsets).
LOADER_VERSION = 1


@dataclass
class PreferencePair:
    id: str
    prompt: str | list[dict]
    chosen: str
    rejected: str
    subset: str


@dataclass
class LoadedPairs:
    pairs: list[PreferencePair]
    problems: list[str] = field(default_factory=list)  # one line per skipped row or adjustment


@dataclass
class _Row:
    """One raw record and where it came from, before validation."""

    where: str  # "file:line" or "dataset[split] row i", for messages
    default_id: str  # the id a row without one gets
    record: Any = None
    error: str | None = None  # set when the row could not even be read as an object


def load_preference_pairs(
    source: str | os.PathLike, split: str = "filtered", limit_per_subset: int | None = None
) -> LoadedPairs:
    """Pairs from a .jsonl or .parquet file, a folder of them, or a Hugging Face dataset id.

    limit_per_subset keeps the first N pairs of each subset in file order, so a quick run still
    covers every section. Ids are made unique before the limit, so a pair keeps its id whatever N.
    """
    if limit_per_subset is not None and limit_per_subset < 0:
        raise ValueError(f"limit_per_subset must be >= 0 or None, got {limit_per_subset}")
    pairs, problems = [], []
    for row in _rows(source, split):
        pair = _parse_row(row, problems)
        if pair is not None:
            pairs.append((pair, row.where))
    pairs = _unique_ids(pairs, problems)
    if limit_per_subset is not None:
        pairs = _first_per_subset(pairs, limit_per_subset)
    _note_empty_responses(pairs, problems)
    return LoadedPairs(pairs, problems)


# --- where rows come from -------------------------------------------------------------------------


def _rows(source: str | os.PathLike, split: str) -> Iterator[_Row]:
    path = Path(os.path.expanduser(os.fspath(source)))
    if source == SAMPLE and not path.exists():  # the short name of the pairs shipped with srgrpo
        path = example_file("rewardbench_sample.jsonl")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in FILE_SUFFIXES)
        if not files:
            raise ValueError(f"no .jsonl or .parquet files in folder {path}")
        for file in files:
            yield from _file_rows(file)
    elif path.is_file():
        yield from _file_rows(path)
    elif not isinstance(source, str) or _looks_local(source):
        raise FileNotFoundError(f"preference data not found: {source}")
    else:
        yield from _hub_rows(source, split)


def _looks_local(source: str) -> bool:
    # Hub ids are "owner/name": anything path-shaped is a missing file, not a dataset to download.
    return source.startswith(_LOCAL_PREFIXES) or source.endswith(_LOCAL_SUFFIXES)


def _file_rows(path: Path) -> Iterator[_Row]:
    if path.suffix == ".jsonl":
        yield from _jsonl_rows(path)
    elif path.suffix == ".parquet":
        yield from _parquet_rows(path)
    else:
        raise ValueError(f"unsupported file type {path.suffix!r} for {path}: use .jsonl or .parquet")


def _jsonl_rows(path: Path) -> Iterator[_Row]:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue  # blank lines are skipped but keep their numbers, so messages point at the file
            where, default_id = f"{path}:{number}", f"{path.stem}:{number}"
            try:
                yield _Row(where, default_id, json.loads(line))
            except json.JSONDecodeError as err:
                yield _Row(where, default_id, error=f"malformed JSON ({err.msg.removesuffix(' at')} at column {err.colno})")


def _parquet_rows(path: Path) -> Iterator[_Row]:
    import pyarrow.parquet as pq

    for index, record in enumerate(pq.read_table(path).to_pylist()):
        yield _Row(f"{path}:row {index}", f"{path.stem}:{index}", record)


def _hub_rows(dataset_id: str, split: str) -> Iterator[_Row]:
    try:
        import datasets

        rows: Iterable[dict] = datasets.load_dataset(dataset_id, split=split)
    except Exception as err:  # the hub raises many types; all mean "cannot get this dataset"
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        where = "offline (HF_HUB_OFFLINE is set and it is not in the local cache)" if offline else "from the hub"
        raise RuntimeError(
            f"{dataset_id!r} is not an existing local path, and the Hugging Face dataset {dataset_id!r} "
            f"(split {split!r}) could not be loaded {where}: {err}. "
            f"Pass a local .jsonl or .parquet file, or a folder of them, instead."
        ) from err
    for index, record in enumerate(rows):
        yield _Row(f"{dataset_id}[{split}] row {index}", str(index), record)


# --- one row -> one pair --------------------------------------------------------------------------


def _parse_row(row: _Row, problems: list[str]) -> PreferencePair | None:
    """The row as a pair, or None after recording why it was skipped."""
    problem = row.error or _row_problem(row.record)
    if problem is not None:
        problems.append(f"{row.where}: {problem}; row skipped")
        return None
    record = row.record
    pair_id = record.get("id")
    subset = record.get("subset")
    return PreferencePair(
        id=row.default_id if pair_id is None else str(pair_id),
        prompt=record["prompt"],
        chosen=record["chosen"],
        rejected=record["rejected"],
        subset=UNSPECIFIED_SUBSET if subset is None else subset,
    )


def _record_problem(record: Any) -> str | None:
    """What both protocols require of a record: a JSON object with every required field."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    # Parquet and hub rows have every column; a null there is as good as a missing field.
    missing = [k for k in REQUIRED_FIELDS if record.get(k) is None]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    return None


def _optional_fields_problem(record: dict) -> str | None:
    """What both protocols require of the optional fields: `subset` a string, `id` a string or an integer."""
    if record.get("subset") is not None and not isinstance(record["subset"], str):
        return f"field 'subset' must be a string, got {type(record['subset']).__name__}"
    pair_id = record.get("id")
    if pair_id is not None and (isinstance(pair_id, bool) or not isinstance(pair_id, (str, int))):
        return f"field 'id' must be a string or an integer, got {type(pair_id).__name__}"
    return None


def _row_problem(record: Any) -> str | None:
    """What is wrong with a record, naming the field, or None if it is a valid pair."""
    if (problem := _record_problem(record)) is not None:
        return problem
    # check_pair is the scorer's own check, so a loaded pair is one the scorer accepts.
    for name in ("prompt", "chosen", "rejected"):
        try:
            check_pair(record["prompt"], "" if name == "prompt" else record[name], f"field {name!r}")
        except TypeError as err:
            return str(err)
    return _optional_fields_problem(record)


# --- adjustments over the whole set ---------------------------------------------------------------


def _unique_ids(pairs: list[tuple], problems: list[str]) -> list:
    """Keep every pair; later repeats of an id become "id#2", "id#3"... (ids are keys downstream)."""
    first_seen: dict[str, str] = {}
    taken = {pair.id for pair, _ in pairs}
    repeats: dict[str, int] = {}
    for pair, where in pairs:
        if pair.id not in first_seen:
            first_seen[pair.id] = where
            continue
        original = pair.id
        k = repeats.get(original, 1) + 1
        while f"{original}#{k}" in taken:  # never collide with an id the file itself uses
            k += 1
        repeats[original] = k
        pair.id = f"{original}#{k}"
        taken.add(pair.id)
        first_seen[pair.id] = where
        problems.append(f"{where}: duplicate id {original!r} (first at {first_seen[original]}); kept as {pair.id!r}")
    return [pair for pair, _ in pairs]


def _first_per_subset(pairs: list, limit: int) -> list:
    kept, per_subset = [], {}
    for pair in pairs:
        if per_subset.get(pair.subset, 0) < limit:
            per_subset[pair.subset] = per_subset.get(pair.subset, 0) + 1
            kept.append(pair)
    return kept


def _note_empty_responses(pairs: list[PreferencePair], problems: list[str]) -> None:
    empty = [p.id for p in pairs if not p.chosen.strip() or not p.rejected.strip()]
    if empty:
        shown = ", ".join(empty[:10]) + (" ..." if len(empty) > 10 else "")
        problems.append(
            f"{len(empty)} pairs have an empty response (ids {shown}); they are kept and a scorer "
            f"that cannot score them counts the pair wrong"
        )


# --- RewardBench 2: one row per prompt with lists of completions ----------------------------------

PROTOCOLS = ("v1", "v2")


@dataclass
class CompletionSet:
    """One RewardBench 2 prompt: its completions, correct ones first (`num_correct` of them)."""

    id: str
    prompt: str | list[dict]
    chosen: list[str]
    rejected: list[str]
    subset: str
    num_correct: int

    @property
    def completions(self) -> list[str]:
        return list(self.chosen) + list(self.rejected)


@dataclass
class LoadedSets:
    sets: list[CompletionSet]
    problems: list[str] = field(default_factory=list)


def row_protocol(record: Any) -> str | None:
    """'v2' for a row whose chosen/rejected are lists (RewardBench 2), 'v1' for strings, None otherwise."""
    if not isinstance(record, dict):
        return None
    chosen = record.get("chosen")
    if isinstance(chosen, (list, tuple)) and all(isinstance(c, str) for c in chosen):
        return "v2"
    if isinstance(chosen, str):
        return "v1"
    return None


def detect_protocol(source: str | os.PathLike, split: str) -> str:
    """The protocol the data's schema asks for, from its first readable row: list-valued chosen and
    rejected (allenai/reward-bench-2) -> 'v2', string-valued (allenai/reward-bench) -> 'v1'."""
    for row in _rows(source, split):
        found = row_protocol(row.record)
        if found is not None:
            return found
    raise ValueError(f"cannot tell the RewardBench version of {source}: no row has a string (v1) or "
                     f"list-of-strings (v2) 'chosen' field; pass --protocol v1 or v2")


def load_completion_sets(
    source: str | os.PathLike, split: str = "test", limit_per_subset: int | None = None
) -> LoadedSets:
    """RewardBench 2 rows ({id, prompt, chosen: [str], rejected: [str], num_correct, subset, ...})
    from a .jsonl or .parquet file, a folder of them, or a Hugging Face dataset id. Bad rows are
    skipped and named in `problems`, as for v1 pairs; limit_per_subset keeps the first N rows of
    each subset (in the Ties subset a ref row kept without its tied row enters only the accuracies)."""
    if limit_per_subset is not None and limit_per_subset < 0:
        raise ValueError(f"limit_per_subset must be >= 0 or None, got {limit_per_subset}")
    found, problems = [], []
    for row in _rows(source, split):
        problem = row.error or _set_problem(row.record)
        if problem is not None:
            problems.append(f"{row.where}: {problem}; row skipped")
            continue
        record = row.record
        chosen, rejected = [str(c) for c in record["chosen"]], [str(r) for r in record["rejected"]]
        num_correct = record.get("num_correct")
        num_correct = len(chosen) if num_correct is None else int(num_correct)
        if num_correct != len(chosen):
            problems.append(f"{row.where}: num_correct {num_correct} but {len(chosen)} chosen completions; "
                            f"the first {num_correct} of chosen + rejected count as correct (as upstream)")
        subset = record.get("subset")
        pair_id = record.get("id")
        found.append((CompletionSet(row.default_id if pair_id is None else str(pair_id), record["prompt"], chosen,
                                    rejected, UNSPECIFIED_SUBSET if subset is None else subset, num_correct),
                      row.where))
    sets = _unique_ids(found, problems)
    if limit_per_subset is not None:
        sets = _first_per_subset(sets, limit_per_subset)
    empty = [s.id for s in sets if any(not c.strip() for c in s.completions)]
    if empty:
        shown = ", ".join(empty[:10]) + (" ..." if len(empty) > 10 else "")
        problems.append(f"{len(empty)} prompts have an empty completion (ids {shown}); they are kept and a "
                        f"scorer that cannot score it gives the prompt 0 credit")
    return LoadedSets(sets, problems)


def _set_problem(record: Any) -> str | None:
    """What is wrong with a RewardBench 2 record (lists of completions), or None."""
    if (problem := _record_problem(record)) is not None:
        return problem
    try:
        check_pair(record["prompt"], "", "field 'prompt'")
    except TypeError as err:
        return str(err)
    for name in ("chosen", "rejected"):
        value = record[name]
        if isinstance(value, str) or not hasattr(value, "__iter__") or not all(isinstance(c, str) for c in value):
            return (f"field {name!r} must be a list of strings in RewardBench 2's schema, got {type(value).__name__} "
                    f"(a v1 file? pass --protocol v1)")
        if len(value) == 0:
            return f"field {name!r} is an empty list"
    num_correct = record.get("num_correct")
    n = len(record["chosen"]) + len(record["rejected"])
    if num_correct is not None and (isinstance(num_correct, bool) or not isinstance(num_correct, (int, np_int()))
                                    or not 0 < int(num_correct) < n):
        return f"field 'num_correct' must be an integer from 1 to {n - 1}, got {num_correct!r}"
    return _optional_fields_problem(record)


def np_int() -> type:
    """numpy's integer base class (parquet and hub rows give numpy integers), without importing numpy early."""
    import numpy

    return numpy.integer
