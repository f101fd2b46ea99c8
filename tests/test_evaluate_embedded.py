"""Evaluation on the embedded SmolLM2 and MiniLM (slow): generation metrics, multiple choice, and the ICL path."""

from __future__ import annotations

import pytest

from datawinnow.data import load
from datawinnow.evaluate import EvalSession, GenerationParams, evaluate
from datawinnow.evaluate.icl import ICLExamples
from datawinnow.runtime.context import Context

pytestmark = pytest.mark.slow


def test_smollm2_generation_mc_ifeval_and_icl(smollm2, minilm):
    ctx = Context(model=smollm2, embedder=minilm, progress=False, batch_size=4)
    session = EvalSession(ctx, gen=GenerationParams(), max_new_tokens=16, limit=3)
    res = evaluate(["generation", "arc_easy"], session)
    gen = res["suites"]["generation"]["summary"]
    # an instruct model's answer to an AlpacaEval question shares meaning with the GPT-4 reference (ROUGE is
    # small: 16 new tokens against references of hundreds of words, so recall is tiny)
    assert gen["n"] == 3 and gen["rouge1"] > 0.01 and gen["similarity"] > 0.2
    assert all(r["answer"] for r in res["suites"]["generation"]["items"])
    assert res["suites"]["arc_easy"]["summary"]["n"] == 3

    subset = load("bundled:alpaca_en_demo")[:50]
    icl = ICLExamples(subset, minilm, k=5, max_tokens=512)
    s2 = EvalSession(ctx, gen=GenerationParams(), max_new_tokens=8, limit=2, icl=icl)
    res2 = evaluate(["generation"], s2, train=[subset])
    rows = res2["suites"]["generation"]["items"]
    assert all(1 <= len(r["icl_examples"]) <= 5 for r in rows)
    assert res2["contamination"]["checked"] and res2["contamination"]["n_train"] == 50
