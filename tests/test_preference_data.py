"""Loading RewardBench-schema preference pairs: formats, bad rows, ids, limits, error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import shared_data_dir

from srgrpo.rewardbench.preference_data import LoadedPairs, PreferencePair, load_preference_pairs

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Add 1/3 and 1/4."}]


def row(i, subset="hep-go", **overrides) -> dict:
    record = {"id": i, "prompt": f"prompt {i}", "chosen": f"good {i}", "rejected": f"bad {i}", "subset": subset}
    record.update(overrides)
    return record


def write_jsonl(path: Path, lines: list) -> Path:
    """Objects are dumped as JSON; strings are written verbatim (to plant malformed lines)."""
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


def write_parquet(path: Path, records: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(records), path)
    return path


# --- formats --------------------------------------------------------------------------------------


def test_jsonl(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [row(1), row(2, subset="llmbar-natural")])
    loaded = load_preference_pairs(path)
    assert isinstance(loaded, LoadedPairs)
    assert loaded.problems == []
    assert loaded.pairs == [
        PreferencePair("1", "prompt 1", "good 1", "bad 1", "hep-go"),
        PreferencePair("2", "prompt 2", "good 2", "bad 2", "llmbar-natural"),
    ]
    assert load_preference_pairs(str(path)).pairs == loaded.pairs  # str and Path alike


def test_messages_prompt(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [row(1, prompt=MESSAGES)])
    (pair,) = load_preference_pairs(path).pairs
    assert pair.prompt == MESSAGES


def test_parquet(tmp_path):
    path = write_parquet(tmp_path / "pairs.parquet", [row(1), row(2), row(3, subset="donotanswer")])
    loaded = load_preference_pairs(path)
    assert loaded.problems == []
    assert [(p.id, p.subset) for p in loaded.pairs] == [("1", "hep-go"), ("2", "hep-go"), ("3", "donotanswer")]
    assert loaded.pairs[0].chosen == "good 1"


def test_parquet_messages_and_nulls(tmp_path):
    # One Parquet column holds one type, so the message prompts live in their own file.
    messages = write_parquet(tmp_path / "messages.parquet", [row(1, prompt=MESSAGES)])
    assert load_preference_pairs(messages).pairs[0].prompt == MESSAGES
    records = [row(1), row(2, chosen=None), {"prompt": "p", "chosen": "c", "rejected": "r", "id": None, "subset": None}]
    loaded = load_preference_pairs(write_parquet(tmp_path / "nulls.parquet", records))
    assert [p.id for p in loaded.pairs] == ["1", "nulls:2"]  # row index, 0-based, as in a dataset
    assert loaded.pairs[1].subset == "unspecified"
    assert len(loaded.problems) == 1
    assert "nulls.parquet:row 1" in loaded.problems[0] and "chosen" in loaded.problems[0]


def test_folder_reads_every_file_sorted_by_name(tmp_path):
    write_jsonl(tmp_path / "b.jsonl", [row("b1"), row("b2")])
    write_parquet(tmp_path / "a.parquet", [row("a1")])
    write_jsonl(tmp_path / "c.jsonl", [row("c1")])
    (tmp_path / "notes.txt").write_text("not data")
    loaded = load_preference_pairs(tmp_path)
    assert [p.id for p in loaded.pairs] == ["a1", "b1", "b2", "c1"]
    assert loaded.problems == []


def test_folder_without_data_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not data")
    with pytest.raises(ValueError, match="no .jsonl or .parquet"):
        load_preference_pairs(tmp_path)


# --- bad rows -------------------------------------------------------------------------------------


def test_bad_rows_are_skipped_and_named(tmp_path):
    path = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            row(1),
            '{"prompt": "p", "chosen": ',  # line 2: malformed JSON
            {"id": 3, "prompt": "p", "rejected": "r"},  # line 3: no chosen
            row(4, rejected=7),  # line 4: wrong type
            row(5, prompt=[{"role": "user"}]),  # line 5: message without content
            row(6, prompt=12),  # line 6: prompt of the wrong type
            "[1, 2]",  # line 7: not an object
            "",  # line 8: blank, skipped silently
            row(9, subset=3),  # line 9: subset of the wrong type
            row(10, id=[1]),  # line 10: id of the wrong type
            row(11),
        ],
    )
    loaded = load_preference_pairs(path)
    assert [p.id for p in loaded.pairs] == ["1", "11"]
    problems = loaded.problems
    assert len(problems) == 8
    expected = [
        (2, "malformed JSON"),
        (3, "chosen"),
        (4, "field 'rejected'"),
        (5, "field 'prompt'"),
        (6, "field 'prompt'"),
        (7, "JSON object"),
        (9, "subset"),
        (10, "id"),
    ]
    for problem, (line, words) in zip(problems, expected):
        assert problem.startswith(f"{path}:{line}: "), problem
        assert words in problem, problem
        assert "skipped" in problem



def test_a_control_character_in_a_string_is_named_once(tmp_path):
    path = tmp_path / "ctrl.jsonl"
    path.write_text(json.dumps(row(1)) + "\n" + '{"prompt": "a\tb", "chosen": "c", "rejected": "r"}\n')
    problem = load_preference_pairs(path).problems[0]
    assert problem.startswith(f"{path}:2: malformed JSON (Invalid control character at column 14)"), problem

def test_missing_ids_and_subsets_get_defaults(tmp_path):
    path = write_jsonl(
        tmp_path / "plain.jsonl",
        [{"prompt": "p", "chosen": "c", "rejected": "r"}, "", {"prompt": "q", "chosen": "c", "rejected": "r", "id": "x"}],
    )
    loaded = load_preference_pairs(path)
    assert [(p.id, p.subset) for p in loaded.pairs] == [("plain:1", "unspecified"), ("x", "unspecified")]
    assert loaded.problems == []


def test_empty_responses_are_kept_with_one_summary_line(tmp_path):
    path = write_jsonl(tmp_path / "empty.jsonl", [row(1, chosen=""), row(2, rejected="  \n"), row(3), row(4, chosen=" ")])
    loaded = load_preference_pairs(path)
    assert [p.id for p in loaded.pairs] == ["1", "2", "3", "4"]
    assert len(loaded.problems) == 1
    assert loaded.problems[0].startswith("3 pairs have an empty response")
    assert "kept" in loaded.problems[0] and "wrong" in loaded.problems[0]


def test_duplicate_ids_are_renamed_and_reported(tmp_path):
    path = write_jsonl(
        tmp_path / "dup.jsonl",
        [row(3692), row(3692, subset="hep-js"), row(7), row("3692"), row("3692#3")],
    )
    loaded = load_preference_pairs(path)
    # "3692#3" is taken by the file itself, so the third 3692 skips to #4.
    assert [p.id for p in loaded.pairs] == ["3692", "3692#2", "7", "3692#4", "3692#3"]
    assert [p.subset for p in loaded.pairs][:2] == ["hep-go", "hep-js"]
    assert len(loaded.problems) == 2
    assert loaded.problems[0].startswith(f"{path}:2: duplicate id '3692'")
    assert f"{path}:1" in loaded.problems[0]
    assert loaded.problems[1].startswith(f"{path}:4: duplicate id '3692'")


def test_duplicate_ids_across_files_in_a_folder(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [row(1)])
    write_jsonl(tmp_path / "b.jsonl", [row(1)])
    loaded = load_preference_pairs(tmp_path)
    assert [p.id for p in loaded.pairs] == ["1", "1#2"]
    assert len(loaded.problems) == 1 and "b.jsonl:1" in loaded.problems[0]


def test_limit_per_subset_keeps_the_first_of_each_subset(tmp_path):
    records = [row(i, subset="hep-go" if i % 3 else "donotanswer") for i in range(10)]
    records.append(row(10, subset="mt-bench-easy"))
    path = write_jsonl(tmp_path / "many.jsonl", records)
    loaded = load_preference_pairs(path, limit_per_subset=2)
    assert [(p.id, p.subset) for p in loaded.pairs] == [
        ("0", "donotanswer"),
        ("1", "hep-go"),
        ("2", "hep-go"),
        ("3", "donotanswer"),
        ("10", "mt-bench-easy"),
    ]
    assert load_preference_pairs(path, limit_per_subset=0).pairs == []
    assert len(load_preference_pairs(path, limit_per_subset=None).pairs) == 11
    with pytest.raises(ValueError):
        load_preference_pairs(path, limit_per_subset=-1)


def test_limit_keeps_ids_of_the_full_run(tmp_path):
    path = write_jsonl(tmp_path / "dup.jsonl", [row(1, subset="a"), row(1, subset="b")])
    full = {p.subset: p.id for p in load_preference_pairs(path).pairs}
    limited = {p.subset: p.id for p in load_preference_pairs(path, limit_per_subset=1).pairs}
    assert limited == full == {"a": "1", "b": "1#2"}


# --- sources that cannot be read ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["missing.jsonl", "./missing", "data/missing.parquet", "~/surely-missing-srgrpo.json"])
def test_missing_local_path_is_file_not_found(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing"):
        load_preference_pairs(name)


def test_missing_path_object_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_preference_pairs(tmp_path / "nope")


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("prompt,chosen,rejected\n")
    with pytest.raises(ValueError, match=".jsonl or .parquet"):
        load_preference_pairs(path)


def test_hub_id_offline_is_a_clear_runtime_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache, whatever this machine has
    with pytest.raises(RuntimeError) as info:
        load_preference_pairs("nobody-srgrpo/not-a-dataset", split="filtered")
    message = str(info.value)
    assert "nobody-srgrpo/not-a-dataset" in message
    assert "offline" in message
    assert "local .jsonl or .parquet" in message
    assert "shared" not in message


# --- the real offline file, where this machine has it ---------------------------------------------


def test_real_rewardbench_file():
    path = shared_data_dir() / "preference" / "rewardbench_offline.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    loaded = load_preference_pairs(path)
    assert len(loaded.pairs) == 1403
    assert len({p.subset for p in loaded.pairs}) == 11
    assert len({p.id for p in loaded.pairs}) == 1403
    assert all(isinstance(p.id, str) for p in loaded.pairs)
    limited = load_preference_pairs(path, limit_per_subset=5)
    assert len(limited.pairs) == 55
