"""Evaluation: did this subset help? (SPEC section 5)

- :mod:`.generate`: cached generation; :mod:`.metrics`: ROUGE-1/2/L and embedding similarity;
  :mod:`.rubric`: the 8-dimension LLM-as-judge rubric; :mod:`.winrate`: pairwise win rate vs references;
- :mod:`.icl`: k-nearest in-context examples from a subset; :mod:`.ifeval`: IFEval strict/loose;
- :mod:`.multiple_choice`: ARC/MMLU by choice log-likelihood; :mod:`.lm_eval_adapter`: lm-evaluation-harness;
- :mod:`.hellaswag`, :mod:`.winogrande`: the bundled sets scored as the harness scores them, on
  :mod:`.loglikelihood` (harness-tokenized context/continuation requests);
- :mod:`.contamination`: n-gram and MinHash overlap with the training data;
- :mod:`.suites` (registry of suites), :mod:`.session`, :mod:`.runner`, :mod:`.results`.
"""

from .generate import GenerationParams
from .runner import evaluate
from .session import EvalSession

__all__ = ["EvalSession", "GenerationParams", "evaluate"]
