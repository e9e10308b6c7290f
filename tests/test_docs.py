"""The user's documentation (README.md and docs/**/*.md) speaks of the software: no line names a
session, an issue number, a path of a particular machine or a folder outside the repository, and
every repository path it cites exists. README.md fits on a page (at most 250 lines).

The checker is run on deliberately bad lines first, so a checker that finds nothing fails here."""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250

# What no user-facing line may say, each with why it is wrong for a reader.
FORBIDDEN = [
    (re.compile(r"\bsessions?\b", re.I), "a session (how the software was built, not what it does)"),
    (re.compile(r"\bissues?\s*#?\s*\d+", re.I), "an issue number"),
    (re.compile(r"\(issue", re.I), "an issue reference"),
    (re.compile(r"(?<![\w#`&/])#\d+\b"), "an issue number (#N)"),
    (re.compile(r"(?<![\w.])/(?:work|root|home)/"), "an absolute path of a particular machine"),
    (re.compile(r"\b(?:this|these) machines?\b", re.I), "'this machine' (say which hardware, with the date)"),
    (re.compile(r"\.\./shared\b"), "a folder outside the repository"),
]

# Relative repository paths: what starts with a top-level folder of the repository (srgrpo/ is
# src/srgrpo/), or one of its top-level files.
TOP_FOLDERS = ("src", "tests", "benchmarks", "studies", "scripts", "docs", ".ci", "srgrpo")
TOP_FILES = ("README.md", "CHANGELOG.md", "pyproject.toml", "constraints.txt", "mkdocs.yml")
PATH_WORD = re.compile(
    r"^(?:\./)?(?:(?:%s)/[\w./{},*-]*|%s)$"
    % ("|".join(re.escape(f) for f in TOP_FOLDERS), "|".join(re.escape(f) for f in TOP_FILES)))
# In code blocks a word is a cited path only when it names a file (an output folder such as
# `--output-dir studies/length/results/run` is created by the command, not cited).
FILE_SUFFIX = re.compile(r"\.(?:py|sh|md|toml|txt|yml|yaml|png|json|jsonl|cfg)$")
INLINE_CODE = re.compile(r"`([^`]+)`")
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def user_docs(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def expand_braces(word: str) -> list[str]:
    """`a/{b,c}.png` -> [`a/b.png`, `a/c.png`] (one level, as the docs write them)."""
    match = re.search(r"\{([^{}]*)\}", word)
    if not match:
        return [word]
    return [w for part in match.group(1).split(",")
            for w in expand_braces(word[:match.start()] + part + word[match.end():])]


@functools.lru_cache(maxsize=None)
def _in_a_clone(path: Path, root: Path) -> bool:
    """Whether a file that exists here is also in a clone: not ignored by git (a local run's output
    under an ignored folder exists only where it ran)."""
    if not path.exists():
        return False
    if not (root / ".git").exists():
        return True
    ignored = subprocess.run(["git", "-C", str(root), "check-ignore", "-q", str(path)], capture_output=True)
    return ignored.returncode != 0


def path_exists(word: str, root: Path) -> bool:
    """Whether a cited repository path (maybe with `::test`, braces or a glob) exists under root
    and is not ignored by git."""
    word = word.split("::", 1)[0].removeprefix("./")
    if word.startswith("srgrpo/"):
        word = "src/" + word
    for candidate in expand_braces(word):
        if "*" in candidate:
            if not any(_in_a_clone(p, root) for p in root.glob(candidate.rstrip("/"))):
                return False
        elif not _in_a_clone(root / candidate, root):
            return False
    return True


def _words(text: str) -> list[str]:
    return [w.strip("'\"(),;:[]<>").rstrip(".") or w for w in text.split()]


def cited_paths(line: str, in_code_block: bool) -> list[str]:
    """Repository paths a line cites: in inline code or, in a code block, words naming a file."""
    spans = [line] if in_code_block else INLINE_CODE.findall(line)
    cited = []
    for span in spans:
        for word in _words(span):
            names_file = bool(FILE_SUFFIX.search(word.split("::")[0]))
            if not PATH_WORD.match(word) or (in_code_block and not names_file):
                continue
            # srgrpo/x is src/srgrpo/x when it names a file or folder (`srgrpo/unscored_frac` is a metric)
            if word.startswith("srgrpo/") and not (names_file or word.endswith("/")):
                continue
            cited.append(word)
    return cited


def linked_targets(line: str) -> list[str]:
    """Relative link targets of a line (no URLs, no in-page anchors), without their anchor."""
    targets = []
    for target in LINK.findall(INLINE_CODE.sub("", line)):  # `E[SR](T)` in code is no link
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def problems(path: Path, root: Path = ROOT, check_paths: bool = True) -> list[str]:
    """Every wrong line of one Markdown file, as 'file:line: what' (with check_paths=False only what
    no line may say: a changelog names the paths a release removed)."""
    found, in_code = [], False
    name = path.relative_to(root) if path.is_relative_to(root) else path
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            in_code = not in_code
            continue
        where = f"{name}:{number}"
        named = [what for pattern, what in FORBIDDEN if pattern.search(line)]
        if named:
            found.append(f"{where}: names {'; '.join(named)}: {line.strip()[:120]}")
        if not check_paths:
            continue
        for word in cited_paths(line, in_code):
            if not path_exists(word, root):
                found.append(f"{where}: cites {word}, which is not in the repository")
        if not in_code:
            for target in linked_targets(line):
                if not (path.parent / target).resolve().exists():
                    found.append(f"{where}: links to {target}, which does not exist")
    return found


# --- the checker itself, on lines written to be wrong (and to be right) -----------------------

BAD_LINES = {
    "this section was updated in the fifth session": "session",
    "the window was fixed (issue 21) last week": "issue",
    "see #21 for the discussion": "issue number (#N)",
    "Fixed in issue 13.": "issue number",
    "mkdir -p /work/runs/study": "absolute path",
    "cache in /home/user/.cache": "absolute path",
    "measured on this machine": "this machine",
    "srgrpo rewardbench --data ../shared/data/x.jsonl": "outside the repository",
    "run `benchmarks/no_such_bench.py` first": "not in the repository",
    "its report, `studies/no_such_study/`": "not in the repository",
    "see `src/srgrpo/no_such_module.py`": "not in the repository",
    "see `srgrpo/no_such_module.py`": "not in the repository",
    "plots: `benchmarks/results/bon/{gsm8k,mmlu}/accuracy_vs_n.png`": "not in the repository",
    "read [the plan](no_such_page.md)": "does not exist",
}
GOOD_LINES = [
    "Stable rank is `SR(H) = ||H||_F^2 / ||H||_2^2`; see `src/srgrpo/metrics.py` and `tests/`.",
    "`tests/test_docs.py::test_the_checker_finds_bad_lines`, `srgrpo/scoring.py`, `scripts/{test,install}.sh`",
    "TRL logs it as `srgrpo/unscored_frac`; divide by `E[SR](T)`.",
    "A duplicate id gets a `#2` suffix; GSM8K answers end with `#### 72`; colour #1f77b4.",
    "Read [the README](README.md) or [the docs](https://example.org/srgrpo/#install).",
]


def _checked(tmp_path: Path, text: str) -> list[str]:
    page = tmp_path / "page.md"
    page.write_text(text, encoding="utf-8")
    return problems(page, ROOT)


@pytest.mark.parametrize("line, what", sorted(BAD_LINES.items()))
def test_the_checker_finds_bad_lines(tmp_path, line, what):
    found = _checked(tmp_path, f"# A page\n\nA good line.\n{line}\n")
    assert len(found) == 1 and ":4:" in found[0] and what in found[0], found


def test_the_checker_checks_code_blocks_and_passes_good_lines(tmp_path):
    text = "\n".join(["# A page", *GOOD_LINES, "```bash",
                      "python benchmarks/bench_scoring.py --output-dir benchmarks/results/new_run",
                      "python benchmarks/bench_gone.py", "```"])
    (tmp_path / "README.md").write_text("", encoding="utf-8")
    found = _checked(tmp_path, text)
    assert len(found) == 1 and "benchmarks/bench_gone.py" in found[0], found


# --- the repository's own documentation ------------------------------------------------------

def test_the_readme_fits_on_a_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"


def test_the_docs_site_builds_strictly(tmp_path):
    """What scripts/test.sh runs before pytest, here too so that a renamed module the API reference
    names, a moved page or a broken link fails the suite itself. Needs the `docs` extra."""
    import os
    import shutil
    import subprocess
    import sys

    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists() and not shutil.which("mkdocs"):
        pytest.skip("mkdocs is not installed: pip install -e '.[docs]'")
    done = subprocess.run([str(mkdocs) if mkdocs.exists() else "mkdocs", "build", "--strict", "-d", str(tmp_path)],  # not -q: it hides the warnings
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(user_docs()) > 10 and (tmp_path / "reference" / "scoring" / "index.html").is_file()


@pytest.mark.parametrize("page", user_docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_user_docs_speak_of_the_software_and_cite_real_paths(page):
    found = problems(page)
    assert not found, "\n".join(found)


def test_the_changelog_the_site_includes_speaks_of_the_software():
    found = problems(ROOT / "CHANGELOG.md", check_paths=False)
    assert not found, "\n".join(found)


# --- the README's quickstarts, run as written -------------------------------------------------

def readme_quickstarts(root: Path = ROOT) -> list[str]:
    """The bash blocks of the README's Quickstarts section, in order."""
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstarts", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


def test_every_command_has_a_readme_quickstart():
    blocks = "\n".join(readme_quickstarts())
    for command in ("score", "demo", "rewardbench", "bon", "train", "evaluate", "compare", "serve"):
        assert re.search(rf"^srgrpo {command}\b", blocks, re.M), f"no quickstart runs `srgrpo {command}`"
    assert "curl" in blocks


@pytest.mark.slow
@pytest.mark.embedded
def test_readme_quickstarts_run_offline_outside_the_checkout(tmp_path):
    """Each quickstart block, as written, in an empty folder with no data folder configured and the
    hub unreachable, exits 0 (in order: evaluate reads the adapter train wrote). 6-10 minutes on 2 CPU cores."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("SRGRPO_SHARED_DATA", "SRGRPO_DATA_DIR")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    for block in readme_quickstarts():
        done = subprocess.run(["bash", "-e", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, f"{block}\nexit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


# --- the flags the docs give each command ----------------------------------------------------

COMMAND_AT = re.compile(r"(?:^|[\s(`])(?:srgrpo|-m srgrpo\.cli) (score|demo|rewardbench|bon|train|evaluate|compare|serve)\b")


def documented_flags(root: Path = ROOT) -> dict[str, set[str]]:
    """{command: flags written after `srgrpo COMMAND` in a code block or inline code of the docs}."""
    found: dict[str, set[str]] = {}
    for page in user_docs(root):
        text = page.read_text(encoding="utf-8")
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        spans = [line for block in re.findall(r"```(?:bash)?\n(.*?)```", text, re.S)
                 for line in block.replace("\\\n", " ").splitlines()] + INLINE_CODE.findall(prose)
        for span in spans:
            match = COMMAND_AT.search(span)
            if match:
                rest = span[match.end():].split(" #", 1)[0]
                found.setdefault(match.group(1), set()).update(re.findall(r"(?<![\w-])--[a-z][\w-]*", rest))
    return found


def test_every_flag_the_docs_give_a_command_is_in_its_help(capsys):
    from srgrpo.cli import main

    flags = documented_flags()
    assert set(flags) >= {"score", "rewardbench", "bon", "train", "evaluate", "compare", "serve"}
    for command, given in sorted(flags.items()):
        with pytest.raises(SystemExit):
            main([command, "--help-trl" if command == "train" else "--help"])
        shown = capsys.readouterr().out
        unknown = sorted(flag for flag in given if not re.search(re.escape(flag) + r"(?![\w-])", shown))
        assert not unknown, f"the docs give `srgrpo {command}` flags its --help does not list: {unknown}"


def test_documented_flags_reads_commands_in_blocks_and_inline_code(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "Run `srgrpo score --input sample` first.\n\n```bash\n"
        "torchrun --nproc_per_node 2 -m srgrpo.cli bon --dataset sample \\\n    --n 1,4   # --not-a-flag\n"
        "srgrpo serve --port 5000 &\n```\n", encoding="utf-8")
    assert documented_flags(tmp_path) == {"score": {"--input"}, "bon": {"--dataset", "--n"}, "serve": {"--port"}}
