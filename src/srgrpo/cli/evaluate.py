"""`srgrpo evaluate`: a policy (a model, optionally with LoRA adapters) on the paper's benchmarks."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
import time
from pathlib import Path

from srgrpo import distributed
from srgrpo.cli import COMMANDS, EXIT_OK, HelpFormatter
from srgrpo.cli.common import DATA_DIR_HELP, add_model_arguments, check_at_least, load_model_from_args
from srgrpo.evaluation.comparison import compare_runs
from srgrpo.evaluation.datasets import (
    DATASETS,
    TASK_GROUPS,
    DatasetError,
    load_problems,
    resolve_tasks,
    task_budget,
)
from srgrpo.evaluation.runner import EvaluationConfig, run_tasks
from srgrpo.generation import HFGenerator, Sampling, VLLMGenerator
from srgrpo.reports.evaluation import (
    comparison_markdown,
    evaluation_markdown,
    plot_comparison,
    write_evaluation_report,
)


def parse_budgets(text: str | None) -> dict[str, int] | int | None:
    """'512' (every task) or 'math500=1024,gpqa=256' (those tasks; the others keep theirs)."""
    if text is None:
        return None
    try:
        if "=" not in text:
            value = int(text)
            if value < 1:
                raise ValueError
            return value
        out = {}
        for part in (p for p in text.split(",") if p.strip()):
            name, value = part.split("=", 1)
            out[name.strip().lower()] = int(value)
            if out[name.strip().lower()] < 1:
                raise ValueError
        return out
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--max-new-tokens takes a positive integer or task=N pairs (e.g. math500=1024,gpqa=256), got {text!r}") from None


def adapter_fingerprint(path: Path) -> str:
    """sha256 (first 16 hex digits) of an adapter folder's weights and config: pins what it answers with."""
    if not (path / "adapter_config.json").is_file():
        raise ValueError(f"--adapter {path}: no adapter_config.json there (a folder that `srgrpo train` or "
                         "peft's save_pretrained wrote, e.g. OUTPUT_DIR/final)")
    digest = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.name.startswith("adapter_") and p.is_file()):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def policy_names(adapters: list[Path]) -> list[str]:
    names = []
    for a in adapters:
        # `srgrpo train` writes OUTPUT_DIR/final: name the policy after the run, not "final".
        name = a.parent.name if a.name in ("final", "adapter") and a.parent.name else a.name
        while name in names or name == "base":
            name += "'"
        names.append(name)
    return names


def run(args: argparse.Namespace) -> int:
    # Everything that can be wrong with the arguments fails here, before any model loads.
    budgets = _task_budgets(args)
    check_at_least(args, limit=1, samples=1, batch_size=1)
    _check_backend(args)
    greedy = args.samples == 1
    sampling = Sampling(temperature=args.temperature, top_p=args.top_p, greedy=greedy)
    adapters = [Path(a) for a in args.adapter]
    fingerprints = [adapter_fingerprint(a) for a in adapters]
    problems = _problems(args, list(budgets))
    main = distributed.is_main()
    if main:
        print("tasks: " + ", ".join(f"{t} ({len(ps)} questions, {budgets[t]} tokens)" for t, ps in problems.items()),
              file=sys.stderr)

    policies = ([] if args.skip_base and adapters else [("base", None, None)])
    policies += list(zip(policy_names(adapters), adapters, fingerprints))
    several = len(policies) > 1
    model = tokenizer = None
    if args.backend == "hf":
        model, tokenizer = load_model_from_args(args)
    else:
        from transformers import AutoTokenizer  # seconds to import: not for `srgrpo evaluate --help`

        tokenizer = AutoTokenizer.from_pretrained(args.model)
    started = time.perf_counter()
    run_dirs = []
    for name, adapter, fingerprint in policies:
        out = args.output_dir / name if several else args.output_dir
        run_dirs.append(out)
        if main and several:
            print(f"policy {name}" + (f" (adapter {adapter})" if adapter else "") + f" -> {out}", file=sys.stderr)
        config = {"model": args.model, "adapter": None if adapter is None else str(adapter), "adapter_sha256": fingerprint,
                  "dtype": args.dtype, "backend": args.backend, "batch_size": args.batch_size, "data_dir": args.data_dir}
        if args.backend == "vllm":
            generator = VLLMGenerator(args.model, tokenizer=tokenizer, adapter=None if adapter is None else str(adapter))
            policy_model = None
        else:
            policy_model = model if adapter is None else _with_adapter(model, adapter)
            generator = HFGenerator(policy_model, tokenizer, batch_size=args.batch_size * args.samples, scoring="none")
        try:
            summary = run_tasks(generator, problems, out, EvaluationConfig(
                budgets=budgets, sampling=sampling, samples=args.samples, seed=args.seed, run_info=config,
                overwrite=args.overwrite, questions_per_chunk=args.batch_size, progress=not args.quiet, policy=name))
        finally:
            if adapter is not None and policy_model is not None:
                model = policy_model.unload()  # the base model back, without the adapter's layers
        if summary is not None:
            write_evaluation_report(summary, out)
            print(evaluation_markdown(summary))
    if not main:
        return EXIT_OK
    if several:
        comparison = compare_runs(run_dirs, base=run_dirs[0] if not args.skip_base else None, seed=args.seed)
        _write_comparison(comparison, args.output_dir / "report.md", args.output_dir / "comparison.png")
        print(comparison_markdown(comparison))
    print(f"wrote answers.jsonl, results.json and report.md to {args.output_dir}"
          f"{' (one folder per policy, Table 2 in report.md and comparison.png)' if several else ''} "
          f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return EXIT_OK


def _task_budgets(args) -> dict[str, int]:
    """{task: token budget} of the tasks --tasks names, in order."""
    try:
        tasks = resolve_tasks(args.tasks)
    except DatasetError as err:
        raise ValueError(f"--tasks: {err}") from None
    budgets = {t: task_budget(t) for t in tasks}
    if isinstance(args.max_new_tokens, int):
        budgets = {t: args.max_new_tokens for t in tasks}
    elif isinstance(args.max_new_tokens, dict):
        unknown = sorted(set(args.max_new_tokens) - set(tasks))
        if unknown:
            raise ValueError(f"--max-new-tokens names tasks not being run: {', '.join(unknown)} (tasks: {', '.join(tasks)})")
        budgets.update(args.max_new_tokens)
    return budgets


def _check_backend(args) -> None:
    if args.backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise ValueError("--backend vllm needs vLLM, which is not installed: pip install 'srgrpo[vllm]' "
                             "(GPU machines only), or use --backend hf")
        if args.model is None:
            raise ValueError("--backend vllm needs --model (a Hugging Face id or folder vLLM can load)")


def _problems(args, tasks: list[str]) -> dict:
    try:
        return {t: load_problems(t, limit=args.limit, seed=args.seed, data_dir=args.data_dir) for t in tasks}
    except DatasetError as err:
        raise ValueError(f"--tasks: {err}") from None


def _write_comparison(comparison, report: Path, plot: Path) -> None:
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(comparison_markdown(comparison))
    report.with_name(report.stem + ".json").write_text(json.dumps(comparison.to_json(), indent=2))
    plot_comparison(comparison, plot)


def _with_adapter(model, adapter: Path):
    # peft and srgrpo.training.trainer (TRL, peft) take seconds to import, and only --adapter needs them.
    from peft import PeftModel

    from srgrpo.training.trainer import libraries_renamed_calls

    with libraries_renamed_calls():  # peft reads transformers' renamed is_gradient_checkpointing
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=False)


def _task_help() -> str:
    groups = "\n".join(f"  {g}: {', '.join(ts)}" for g, ts in TASK_GROUPS.items())
    tasks = "\n".join(f"  {name} ({spec.max_new_tokens} tokens): {spec.description}" for name, spec in DATASETS.items())
    return f"groups:\n{groups}\ntasks (token budget):\n{tasks}"


def add_parser(sub) -> None:
    ev = sub.add_parser(
        "evaluate", formatter_class=HelpFormatter, help=COMMANDS["evaluate"].help,
        description="Answer every question of each task with the model's chat template and the task's prompt "
        "(math: step by step, final answer in \\boxed{}; multiple choice: end with the letter), greedy by "
        "default, within each task's token budget, and grade it (math-verify for math, the option letter "
        "for multiple choice). Writes answers.jsonl (every answer, appended as it is graded), run.json "
        "(what decides the answers), results.json (per-task accuracy with 95% bootstrap intervals, the STEM "
        "and Math averages) and report.md. Run the same command again after a crash and only what is "
        "missing is generated. With --adapter, the base and each adapter get a folder under OUTPUT_DIR "
        "and report.md there is the paper's Table 2 (as `srgrpo compare` writes it).",
        epilog="examples:\n"
        "  srgrpo evaluate --tasks sample --limit 4 --max-new-tokens 128 --output-dir runs/eval-base\n"
        "  srgrpo evaluate --tasks paper --limit 40 --output-dir runs/eval-base\n"
        "  srgrpo evaluate --model Qwen/Qwen2.5-1.5B-Instruct --adapter runs/grpo/final --tasks paper "
        "--output-dir runs/eval\n"
        "  torchrun --nproc_per_node 4 -m srgrpo.cli evaluate --model M --tasks math --output-dir runs/eval-math\n"
        + _task_help(),
    )
    ev.add_argument("--tasks", default="paper",
                    help="paper, stem, math, or comma-separated task names / groups / JSONL files; 'sample': 16 "
                    "GSM8K questions shipped with srgrpo (default: paper)")
    ev.add_argument("--output-dir", required=True, type=Path, help="folder for answers, results and report")
    ev.add_argument("--adapter", action="append", default=[],
                    help="a LoRA adapter folder (e.g. a `srgrpo train` run's OUTPUT_DIR/final); repeat for several")
    ev.add_argument("--skip-base", action="store_true", help="with --adapter: do not evaluate the model without adapter")
    ev.add_argument("--limit", type=int, default=None,
                    help="first N questions of each task (MMLU-Redux: interleaved across subjects; MMLU: a seeded sample)")
    ev.add_argument("--max-new-tokens", type=parse_budgets, default=None,
                    help="token budget: N for every task, or task=N pairs (default: each task's own, see below)")
    ev.add_argument("--samples", type=int, default=1,
                    help="answers per question: 1 = greedy (the default); k > 1 samples with --temperature and "
                    "--top-p and reports pass@1 (mean), pass@k and majority@k")
    ev.add_argument("--temperature", type=float, default=0.7, help="with --samples > 1 (default: 0.7)")
    ev.add_argument("--top-p", type=float, default=0.9, help="with --samples > 1 (default: 0.9)")
    ev.add_argument("--seed", type=int, default=0, help="sampling, GPQA option order, MMLU sample, bootstrap")
    ev.add_argument("--batch-size", type=int, default=16, help="questions per generate call (default: 16)")
    ev.add_argument("--backend", choices=("hf", "vllm"), default="hf",
                    help="hf: transformers generate (default); vllm: vLLM on a GPU (pip install 'srgrpo[vllm]')")
    ev.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    ev.add_argument("--overwrite", action="store_true", help="discard a previous run in OUTPUT_DIR")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    add_model_arguments(ev)
    ev.set_defaults(func=run)
