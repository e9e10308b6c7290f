"""Imports flow one way: base -> forward engine -> features -> scorer -> shared pieces -> apps ->
reports -> cli. An app never imports another app, and nothing imports a layer above its own.
Read from the source (every import, also those inside functions), so a sideways import fails here."""

import ast
import subprocess
import sys
from pathlib import Path

import srgrpo

PACKAGE = Path(srgrpo.__file__).parent

# Module (first component under srgrpo/) -> layer. A module may import its own layer's base modules
# and anything below; apps (layer 5) never import each other.
LAYERS = {
    "options": 0, "text": 0, "metrics": 0, "models": 0, "distributed": 0, "records": 0, "stats": 0,
    "results": 0, "registry": 0, "version": 0,
    "engine": 1,
    "features": 2,
    "scoring": 3,
    "generation": 4, "evaluation": 4, "score_io": 4, "length_robust": 4, "judges": 4,
    "rewardbench": 5, "bon": 5, "training": 5, "serving": 5,
    "reports": 6,
    "cli": 7,
}
APPS = {name for name, layer in LAYERS.items() if layer == 5}


def component(module: str) -> str:
    return module.split(".")[1] if module.startswith("srgrpo.") else ""


def imports_of(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "srgrpo":  # `from srgrpo import x`: a submodule, or the package's own face
                for alias in node.names:
                    if alias.name in LAYERS:
                        yield node.lineno, f"srgrpo.{alias.name}"
            else:
                yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


def test_every_module_has_a_layer():
    names = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    assert names == set(LAYERS), f"give these a layer (or remove them from LAYERS): {names ^ set(LAYERS)}"


def test_imports_flow_one_way():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts == ("__init__.py",):
            continue  # the package's public face re-exports from every layer
        here = relative.parts[0].removesuffix(".py")
        for line, module in imports_of(path):
            there = component(module)
            if not there or there == here:
                continue
            if LAYERS[there] > LAYERS[here] or (here in APPS and there in APPS):
                wrong.append(f"{relative}:{line} imports {module} ({here} is layer {LAYERS[here]}, "
                             f"{there} is layer {LAYERS[there]})")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_the_package_face():
    """`srgrpo/__init__.py` re-exports from every layer, so a module importing a name from it (say
    `__version__`, which lives in the base module `srgrpo.version`) would depend on the top of the
    package."""
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "srgrpo" and node.level == 0:
                wrong += [f"{path.relative_to(PACKAGE)}:{node.lineno} imports srgrpo.{a.name}"
                          for a in node.names if a.name not in LAYERS]
    assert not wrong, "\n".join(wrong)


def test_docstrings_keep_their_indentation():
    """A docstring line that falls back to column 0 inside an indented block breaks `help()` and
    `inspect.getdoc` for the whole docstring (its margin becomes 0)."""
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or ast.get_docstring(node) is None:
                continue
            indent = node.body[0].col_offset
            lines = node.body[0].value.value.splitlines()[1:]
            if any(line.strip() and len(line) - len(line.lstrip()) < indent for line in lines):
                wrong.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}")
    assert not wrong, "\n".join(wrong)


MAX_PARAMETERS = 8  # a function needing more takes a config (a dataclass) instead
MAX_LINES = 80  # from `def` to the last line, docstring included


def test_functions_are_short_and_take_few_parameters():
    """Every function under src/ takes at most MAX_PARAMETERS parameters (self and cls not counted;
    *args and **kwargs count one each) and runs at most MAX_LINES lines."""
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            args = node.args
            names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
            count = len(names) + (args.vararg is not None) + (args.kwarg is not None)
            count -= bool(names) and names[0] in ("self", "cls")
            lines = node.end_lineno - node.lineno + 1
            if count > MAX_PARAMETERS or lines > MAX_LINES:
                wrong.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {count} parameters, {lines} lines")
    assert not wrong, "\n".join(wrong)


# The only functions that import a srgrpo module, (file, function, module) -> why. Every other import of
# srgrpo's own code is at module level, where a reader and the tools see the dependency graph.
LOCAL_IMPORTS = {
    ("cli/__init__.py", "main", "srgrpo.models"): "it imports torch, which `srgrpo --help` and --version never need",
    ("cli/__init__.py", "main", "srgrpo.distributed"): "it imports torch, which `srgrpo --help` and --version never "
                                                       "need",
    ("cli/evaluate.py", "_with_adapter", "srgrpo.training.trainer"): "it imports TRL and peft (seconds); only "
                                                                      "--adapter needs it",
}


def _function_imports(node, function=None):
    """(function, line, srgrpo module) for each import of srgrpo code inside a function (the innermost)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _function_imports(child, child.name)
        elif function is not None and isinstance(child, ast.ImportFrom) and child.level:
            yield function, child.lineno, "." * child.level + (child.module or "")  # relative: srgrpo's own
        elif function is not None and isinstance(child, (ast.Import, ast.ImportFrom)):
            modules = [child.module] if isinstance(child, ast.ImportFrom) else [a.name for a in child.names]
            yield from ((function, child.lineno, m) for m in modules if m.split(".")[0] == "srgrpo")
        else:
            yield from _function_imports(child, function)


def test_srgrpo_imports_are_at_module_level():
    """No function imports a srgrpo module except the LOCAL_IMPORTS, each with its reason; an entry
    no longer found there is dropped from the list too."""
    found, wrong = set(), []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        for function, line, module in _function_imports(ast.parse(path.read_text(encoding="utf-8"))):
            found.add((relative, function, module))
            if (relative, function, module) not in LOCAL_IMPORTS:
                wrong.append(f"{relative}:{line} {function} imports {module}: move it to the module's imports "
                             "(or, if it must stay, add it to LOCAL_IMPORTS with the reason)")
    assert not wrong, "\n".join(wrong)
    assert set(LOCAL_IMPORTS) <= found, f"gone, drop from LOCAL_IMPORTS: {set(LOCAL_IMPORTS) - found}"


def test_srgrpo_help_imports_no_command_module():
    """`srgrpo --help` reads the command table (srgrpo.cli.COMMANDS) and loads neither the command
    modules nor torch; `srgrpo score --help` loads the score module only."""
    probe = ("import sys; from srgrpo.cli import build_parser; build_parser({command!r}); "
             "print(sorted(m for m in sys.modules if m.startswith('srgrpo.cli.') or m == 'torch'))")
    for command, loaded in ((None, []), ("score", ["srgrpo.cli.common", "srgrpo.cli.score", "torch"])):
        out = subprocess.run([sys.executable, "-c", probe.format(command=command)], capture_output=True, text=True,
                             check=True).stdout
        assert out.strip() == repr(loaded), command


def test_no_private_names_cross_modules():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("srgrpo"):
                wrong += [f"{path.relative_to(PACKAGE)}:{node.lineno} imports {node.module}.{a.name}"
                          for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert not wrong, "\n".join(wrong)


def test_the_package_face_is_visible_to_type_checkers():
    """Every lazily loaded public name is also imported under TYPE_CHECKING, from the same module."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    typed = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom):
                    typed.update({alias.name: stmt.module for alias in stmt.names})
    assert typed == srgrpo._PUBLIC
    for name, module in srgrpo._PUBLIC.items():
        assert getattr(srgrpo, name) is getattr(__import__(module, fromlist=[name]), name)


def _documented_layout(text: str):
    """{folder: set of entries} from the "## The layout" block of the architecture page: each line's
    leading names (`a.py`, `b/`, or a comma list), nested by indentation under src/srgrpo/."""
    import re

    section = text.split("## The layout", 1)[1]
    block = section.split("```", 2)[1].splitlines()[1:]
    layout, stack = {}, []
    for line in block:
        match = re.match(r"^( *)((?:[\w./]+)(?:, [\w./]+)*)", line)
        if not match:
            continue
        depth = len(match.group(1)) // 2
        names = match.group(2).split(", ")
        stack = stack[:depth]
        folder = "/".join(stack)
        layout.setdefault(folder, set()).update(names)
        if len(names) == 1 and names[0].endswith("/"):
            stack.append(names[0].rstrip("/"))
    return layout


def test_the_documented_layout_matches_the_tree():
    root = PACKAGE.parents[1]
    page = (root / "docs" / "architecture.md").read_text(encoding="utf-8")
    layout = _documented_layout(page)
    assert layout[""] >= {"src/srgrpo/", "tests/", "benchmarks/", "scripts/", "constraints.txt"}
    assert all((root / name).exists() for name in layout[""]), sorted(n for n in layout[""] if not (root / n).exists())
    for folder, names in layout.items():
        if not folder.startswith("src/srgrpo"):
            continue
        here = root / folder
        actual = {p.name + "/" if p.is_dir() else p.name for p in here.iterdir()
                  if p.name != "__pycache__" and (p.is_dir() or p.suffix == ".py")}
        listed, actual = names - {"__init__.py"}, actual - {"__init__.py"}
        assert listed == actual, f"{folder}: docs/architecture.md lists {sorted(listed - actual)} " \
            f"that do not exist and misses {sorted(actual - listed)}"
    scripts_line = next(line for line in page.splitlines() if line.startswith("scripts/ "))
    assert set(scripts_line.split(None, 1)[1].split(", ")) == {p.name for p in (root / "scripts").iterdir()}
