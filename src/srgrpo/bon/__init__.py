"""Best-of-N decoding with stable rank: sample N candidates, keep the best by a selector, grade.

    from srgrpo import load_model
    from srgrpo.bon import BonConfig, HFGenerator, Sampling, load_problems, run_bon

    model, tokenizer = load_model()
    results = run_bon(HFGenerator(model, tokenizer), load_problems("gsm8k", limit=100), "out/",
                      BonConfig(ns=[1, 4, 8], selectors=["stable_rank", "random", "majority"],
                                sampling=Sampling(max_new_tokens=256)))
    results["selectors"]["stable_rank"]["8"], results["greedy"]

Where each piece of the app lives: the command `srgrpo bon` = `srgrpo.cli.bon`; the run
`srgrpo.bon.runner.run_bon` with its `BonConfig` (resumable generations.jsonl, run.json, results.json); the selectors
`srgrpo.bon.selectors.SELECTORS`; the questions and grading `srgrpo.evaluation`; the generators
`srgrpo.generation`; the results' type `srgrpo.results.BestOfNSummary`; the report
`srgrpo.reports.best_of_n.write_best_of_n_report`.
"""

from srgrpo.bon.runner import BonConfig, run_bon
from srgrpo.bon.selectors import SELECTORS, build_selectors
from srgrpo.generation import HFGenerator, Sample, Sampling, VLLMGenerator
from srgrpo.evaluation.datasets import DATASETS, DatasetError, Problem, load_problems
from srgrpo.evaluation.grading import extract_answer, is_correct

__all__ = [
    "HFGenerator", "VLLMGenerator", "Sample", "Sampling", "extract_answer", "is_correct", "run_bon", "BonConfig",
    "SELECTORS", "build_selectors", "DATASETS", "DatasetError", "Problem", "load_problems",
]
