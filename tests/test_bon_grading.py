"""Answer extraction and grading on tricky answers, and the benchmark loaders."""

import json
from pathlib import Path

import pytest
from conftest import shared_data_dir

from srgrpo.evaluation.datasets import DatasetError, Problem, load_problems
from srgrpo.evaluation.grading import extract_answer, extract_letter, extract_number, is_correct, parse_number

GSM = Problem("g", "q", "1234", "gsm8k")
MATH = Problem("m", "q", "\\frac{14}{3}", "math")
CHOICE = Problem("c", "q", "C", "choice", ("w", "x", "y", "z"))
SHARED = shared_data_dir()


@pytest.mark.parametrize("completion, expected", [
    ("So she makes 1,234 dollars. The answer is 1,234.", True),  # commas in numbers
    ("Total: $1,234.00", True),  # currency, trailing zeros
    ("Steps... 12 + 3 = 15. The answer is \\boxed{1234}.", True),  # boxed beats the last number
    ("The answer is 1234. Check: 1234 - 34 = 1200", True),  # the stated answer beats later numbers
    ("#### 1234", True),
    ("I first got 1233, then corrected to 1234", True),  # no marker: last number
    ("The answer is 1243.", False),
    ("I cannot solve this.", False),  # no number at all: wrong, not a crash
    ("", False),
])
def test_gsm8k_grading(completion, expected):
    assert is_correct(GSM, completion) is expected


def test_gsm8k_numbers_compare_as_values():
    assert parse_number("3/4") == parse_number("0.75") == parse_number("\\frac{3}{4}")
    assert parse_number("-7.") == -7
    assert parse_number("abc") is None and parse_number("1/0") is None
    assert extract_number("x = \\frac{1}{2}, so the answer is \\frac{1}{2}") == "1/2"
    assert is_correct(Problem("g", "q", "0.5", "gsm8k"), "The answer is 1/2")


@pytest.mark.parametrize("completion, expected", [
    ("Therefore the result is $\\boxed{\\frac{14}{3}}$.", True),
    ("So the answer is \\boxed{\\dfrac{14}{3}}", True),  # dfrac vs frac
    ("The answer is $14/3$.", True),
    ("\\boxed{4.67}", False),  # a rounded value is not the exact answer
    ("\\boxed{\\frac{3}{14}}", False),
    ("no idea", False),
])
def test_math_grading_with_math_verify(completion, expected):
    assert is_correct(MATH, completion) is expected


def test_math_grading_parses_gold_with_latex_structure():
    tuple_gold = Problem("m", "q", "\\left( 3, \\frac{\\pi}{2} \\right)", "math")
    assert is_correct(tuple_gold, "The polar coordinates are $\\boxed{\\left(3, \\frac{\\pi}{2}\\right)}$.")
    assert not is_correct(tuple_gold, "$\\boxed{(3, \\pi)}$")
    # The pooling key for majority votes treats equal values as one answer.
    assert extract_answer(MATH, "\\boxed{\\frac{1}{2}}") == extract_answer(MATH, "\\boxed{\\dfrac{1}{2}}")


@pytest.mark.parametrize("completion, letter", [
    ("Answer: C", "C"),
    ("A good reason is that the answer is (C).", "C"),  # the article "A" is not the answer
    ("C) because the others are wrong", "C"),
    ("I think B is wrong, so the correct option is C.", "C"),
    ("$\\boxed{C}$", "C"),
    ("answer: c", "C"),
    ("After thinking, (B) fits best.", "B"),
    ("A cat is an animal.", None),
    ("I do not know.", None),
])
def test_choice_letter_extraction(completion, letter):
    assert extract_letter(completion) == letter
    assert is_correct(CHOICE, completion) is (letter == "C")


def test_a_restated_option_list_is_not_an_answer():
    listing = "A) Clark\nB) Smith\nC) Whitebear\nD) Ebbinghaus"
    assert extract_letter(listing) is None
    assert extract_letter(listing + "\n\nThe correct answer is: D) Ebbinghaus") == "D"
    assert extract_letter(listing + "\n\nThe correct answer is:\n\nD) Ebbinghaus") == "D"  # on the next line
    assert extract_letter("The answer is:\nB. Smith\n\nA) Clark\nB) Smith\nC) Whitebear") == "B"
    assert extract_letter("C) Whitebear, because ...") == "C"  # a single option line is an answer
    problem = Problem("c", "q", "C", "choice", ("Clark", "Smith", "Whitebear", "Ebbinghaus"))
    assert is_correct(problem, listing + "\n\nAnswer: X = Whitebear")  # the option's text
    assert not is_correct(problem, listing)


def test_letters_beyond_the_options_are_not_answers():
    assert extract_letter("Answer: E", n_choices=4) is None
    assert extract_letter("Answer: E", n_choices=5) == "E"


def test_packaged_benchmarks_load_with_their_gold_answers():
    gsm = load_problems("gsm8k")
    assert len(gsm) == 1319 and gsm[0].gold == "18" and gsm[0].kind == "gsm8k"
    aime = load_problems("aime2025")
    assert len(aime) == 30 and aime[0].gold == "70"
    gpqa = load_problems("gpqa")
    assert len(gpqa) == 198 and all(p.kind == "choice" and len(p.choices) == 4 for p in gpqa)
    # The options are shuffled per question, so the right letter is spread over A-D, repeatably.
    letters = [p.gold for p in gpqa]
    assert set(letters) == set("ABCD") and max(map(letters.count, "ABCD")) < 80
    assert [p.gold for p in load_problems("gpqa")] == letters
    assert "A) " in gpqa[0].prompt_text() and "Answer: X" in gpqa[0].prompt_text()


@pytest.mark.skipif(not (SHARED / "eval" / "mmlu.zip").exists(), reason="shared data not found (set SRGRPO_SHARED_DATA)")
def test_shared_benchmarks_load():
    math500 = load_problems("math500", data_dir=SHARED)
    assert len(math500) == 500 and math500[0].kind == "math"
    mmlu = load_problems("mmlu", limit=50, seed=0, data_dir=SHARED)
    assert len(mmlu) == 50 and all(p.gold in "ABCD" for p in mmlu)
    assert len({p.id.rsplit("-", 1)[0] for p in mmlu}) > 10  # a seeded sample spans many subjects
    assert [p.id for p in load_problems("mmlu", limit=50, seed=0, data_dir=SHARED)] == [p.id for p in mmlu]


def test_jsonl_questions_and_their_errors(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"question": "1+1?", "answer": "2"},
        {"question": "Pick", "answer": "b", "choices": ["x", "y"]},
        {"question": "GSM style", "answer": "work\n#### 1,000"},
    ]))
    problems = load_problems(str(path))
    assert [p.kind for p in problems] == ["math", "choice", "math"]
    assert problems[1].gold == "B" and problems[2].gold == "1000"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x"}))
    with pytest.raises(DatasetError, match="question"):
        load_problems(str(bad))
    bad.write_text(json.dumps({"question": "x", "answer": "Z", "choices": ["a", "b"]}))
    with pytest.raises(DatasetError, match="letter"):
        load_problems(str(bad))
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_problems("no-such-benchmark")


def test_the_dataset_registry_is_the_one_list_of_names(capsys):
    from srgrpo.bon import DATASETS as reexported
    from srgrpo.cli import main
    from srgrpo.evaluation.datasets import DATASETS, dataset_help

    assert reexported is DATASETS
    assert list(DATASETS) == ["gsm8k", "math500", "gpqa", "mmlu", "aime2025", "mmlu_redux", "olympiadbench", "amc23",
                             "sample"]
    assert all(spec.name == name and spec.description for name, spec in DATASETS.items())
    assert [name for name, spec in DATASETS.items() if spec.sample_limit] == ["mmlu"]
    assert dataset_help().startswith("gsm8k, math500, gpqa, mmlu, aime2025, mmlu_redux, olympiadbench, amc23, sample or a JSONL file")
    with pytest.raises(SystemExit):
        main(["bon", "--help"])
    help_text = capsys.readouterr().out
    assert all(f"{name}: " in help_text for name in DATASETS)
    with pytest.raises(DatasetError, match="use one of gsm8k, math500, gpqa, mmlu, aime2025, mmlu_redux, olympiadbench, amc23, sample or a JSONL"):
        load_problems("no-such-benchmark")


def test_the_docs_document_every_registered_dataset_and_selector():
    from srgrpo.bon.selectors import SELECTORS
    from srgrpo.evaluation.datasets import DATASETS

    page = (Path(__file__).resolve().parents[1] / "docs" / "apps" / "bon.md").read_text(encoding="utf-8")
    datasets = page[page.index("## Datasets"):page.index("## Selectors")]
    selectors = page[page.index("## Selectors"):page.index("## Grading")]
    assert [name for name in DATASETS if f"`{name}`" not in datasets] == []
    assert [name for name in SELECTORS if f"`{name}`" not in selectors] == []
