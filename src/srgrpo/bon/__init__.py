"""Best-of-N decoding with stable rank: sample N candidates, keep the best by a selector, grade.

    from srgrpo import load_model
    from srgrpo.bon import HFGenerator, Sampling, load_problems, run_bon

    model, tokenizer = load_model()
    results = run_bon(HFGenerator(model, tokenizer), load_problems("gsm8k", limit=100), "out/",
                      ns=[1, 4, 8], selector_names=["stable_rank", "random", "majority"],
                      sampling=Sampling(max_new_tokens=256))
    results["selectors"]["stable_rank"]["8"], results["greedy"]
"""

from srgrpo.bon.runner import run_bon
from srgrpo.bon.selectors import SELECTOR_NAMES, build_selectors
from srgrpo.generation import HFGenerator, Sample, Sampling, VLLMGenerator
from srgrpo.tasks.datasets import DATASETS, DatasetError, Problem, load_problems
from srgrpo.tasks.grading import extract_answer, is_correct

__all__ = [
    "HFGenerator", "VLLMGenerator", "Sample", "Sampling", "extract_answer", "is_correct", "run_bon",
    "SELECTOR_NAMES", "build_selectors", "DATASETS", "DatasetError", "Problem", "load_problems",
]
