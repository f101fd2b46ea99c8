"""DEITA: the representation filter on hand-made embeddings, the evol score (multi-turn), a golden selection,
the last-token embeddings, DEITA's scorer-checkpoint input format, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

from datawinnow.backends.embedder import Embedder
from datawinnow.backends.judge import Judge
from datawinnow.data.record import Dataset, Record
from datawinnow.errors import ConfigError
from datawinnow.registry import METHODS, SCORERS
from datawinnow.runtime.context import Context
from datawinnow.scores.deita import (DEITA_COMPLEXITY_INPUT, complexity_conversation, deita_embeddings, evol_score,
                                     quality_conversation)
from datawinnow.select.repr_filter import representation_filter

# unit vectors in the plane, with exactly known cosines:
#   a.b = 0.8, a.c = 0, a.d = 0.6, b.c = 0.6, b.d = 0.96, c.d = 0.8
A, B, C, D = (1.0, 0.0), (0.8, 0.6), (0.0, 1.0), (0.6, 0.8)
EMB = np.array([A, B, C, D], dtype=np.float32)


def test_filter_tau_above_the_known_similarity():
    # tau = 0.9: a kept; b (0.8 to a) kept; c (0 / 0.6) kept; d (0.96 to b) > 0.9 rejected, nearest b
    r = representation_filter(EMB, [0, 1, 2, 3], budget=4, tau=0.9)
    assert r.kept == [0, 1, 2]
    assert list(r.rejected) == [3] and r.rejected[3][0] == 1 and r.rejected[3][1] == pytest.approx(0.96, abs=1e-6)


def test_filter_tau_below_the_known_similarity():
    # tau = 0.7: a kept; b (0.8 to a) rejected; c (0 to a) kept; d (0.6 to a, 0.8 to c) rejected, nearest c
    r = representation_filter(EMB, [0, 1, 2, 3], budget=4, tau=0.7)
    assert r.kept == [0, 2]
    assert {i: j for i, (j, _) in r.rejected.items()} == {1: 0, 3: 2}
    # tau = 0.97: nothing is that close, all four kept; the walk order decides who is kept first
    assert representation_filter(EMB, [3, 2, 1, 0], budget=4, tau=0.97).kept == [3, 2, 1, 0]
    # walking d first at tau 0.9: d kept, c (0.8) kept, b (0.96 to d) rejected, a (0.6, 0) kept
    assert representation_filter(EMB, [3, 2, 1, 0], budget=4, tau=0.9).kept == [3, 2, 0]


def test_filter_stops_at_budget_and_keeps_equal_similarity():
    r = representation_filter(EMB, [0, 1, 2, 3], budget=2, tau=0.9)
    assert r.kept == [0, 1] and r.examined == 2
    # cosine exactly 0.5 (exact in binary) is kept at tau 0.5: the rule is "<= tau"
    half = np.array([[1.0, 0.0], [0.5, np.sqrt(0.75)]], dtype=np.float32)
    assert representation_filter(half, [0, 1], budget=2, tau=0.5).kept == [0, 1]
    # unnormalised input is normalised first
    assert representation_filter(EMB * 7.0, [0, 1, 2, 3], budget=4, tau=0.9).kept == [0, 1, 2]


def test_filter_chunking_matches_the_one_by_one_walk():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(20, 8))
    emb = np.repeat(base, 5, axis=0) + 0.05 * rng.normal(size=(100, 8))  # 20 tight groups of 5 near-duplicates
    order = list(rng.permutation(100))
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    naive = []
    for i in order:
        if all(unit[i] @ unit[j] <= 0.9 for j in naive):
            naive.append(i)
        if len(naive) == 30:
            break
    for chunk in (1, 3, 7, 512):
        assert representation_filter(emb, order, 30, 0.9, chunk=chunk).kept == naive


def test_filter_bad_options():
    with pytest.raises(ConfigError, match=r"tau is a cosine similarity threshold in \[-1, 1\], got 1.5"):
        representation_filter(EMB, [0], 1, tau=1.5)


# ------------------------------------------------------------------------------------------ scores
class TableJudge(Judge):
    """Probabilities over the choices looked up from the prompt text (fixed, no model)."""

    identity = "table-judge"

    def __init__(self, table):
        self.table = table
        self.calls = 0

    def choice_probs(self, conversations, choices):
        self.calls += len(conversations)
        out = []
        for conv in conversations:
            text = conv[-1]["content"]
            key = next(k for k in self.table if k in text)
            out.append(self.table[key])
        return np.array(out, dtype=np.float64)


def onehot(k):  # probability 1 on rating k (1..6)
    p = np.zeros(6)
    p[k - 1] = 1.0
    return p


def test_evol_score_multi_turn_by_hand():
    # turn 1: complexity E = 0.5*2 + 0.5*4 = 3, quality 5 -> 15
    # turn 2: complexity 2, quality E = 0.25*1 + 0.75*6 = 4.75 -> 9.5; evol = 24.5
    judge = TableJudge({"Q-ONE\n\nResponse": onehot(5), "Q-TWO\n\nResponse": 0.25 * onehot(1) + 0.75 * onehot(6),
                        "Q-ONE": 0.5 * onehot(2) + 0.5 * onehot(4), "Q-TWO": onehot(2)})
    rec = Record(id="m", instruction="Q-TWO", output="A2",
                 messages=[{"role": "user", "content": "Q-ONE"}, {"role": "assistant", "content": "A1"},
                           {"role": "user", "content": "Q-TWO"}, {"role": "assistant", "content": "A2"}])
    table = SCORERS.get("deita")().score(Dataset([rec]), Context(judge=judge, progress=False))
    assert table.score[0] == pytest.approx(24.5)
    assert table.parts["complexity"][0] == pytest.approx(2.5) and table.parts["quality"][0] == pytest.approx(4.875)  # means: (3+2)/2, (5+4.75)/2
    assert table.parts["turns"][0] == 2
    assert evol_score([3, 2], [5, 4.75]) == pytest.approx(24.5)


class TableEmbedder:
    """A stand-in for a SentenceTransformer: fixed vectors by the sample's first word."""

    def __init__(self, vectors):
        self.vectors = vectors

    def encode(self, texts, **kw):
        return np.array([self.vectors[t.split()[0]] for t in texts], dtype=np.float32)


def test_deita_selection_golden():
    # five samples; complexity c and quality q give evol = c * q:
    #   s1: 6*6 = 36   s2: 5*6 = 30   s3: 5*5 = 25   s4: 4*5 = 20   s5: 2*3 = 6
    # embeddings: s2 is a near-copy of s1 (cos 0.96), s4 of s3 (cos 0.96); others far apart.
    # tau 0.9, budget 3: s1 kept, s2 rejected (0.96 to s1), s3 kept, s4 rejected (0.96 to s3), s5 kept
    cq = {"s1": (6, 6), "s2": (5, 6), "s3": (5, 5), "s4": (4, 5), "s5": (2, 3)}
    table = {}
    for name, (c, q) in cq.items():
        table[f"{name} task\n\nResponse"] = onehot(q)
        table[f"{name} task"] = onehot(c)
    vec = {"s1": [1, 0, 0], "s2": [0.96, 0.28, 0], "s3": [0, 1, 0], "s4": [0, 0.96, 0.28], "s5": [0, 0, 1]}
    pool = Dataset([Record(id=n, instruction=f"{n} task", output=f"answer {n}") for n in cq])
    emb = Embedder(TableEmbedder({n: v for n, v in vec.items()}), "table-embedder")
    ctx = Context(judge=TableJudge(table), embedder=emb, progress=False)
    sel = METHODS.get("deita")().run(pool, 3, ctx)
    assert sel.selected == ["s1", "s3", "s5"]
    assert sel.scores == {"s1": 36.0, "s2": 30.0, "s3": 25.0, "s4": 20.0, "s5": 6.0}
    assert sel.reasons["s2"] == "cosine 0.960 > tau 0.9 to kept 's1'"
    # tau 0.97 lets the near-copies through: plain top 3 by evol score
    assert METHODS.get("deita")(tau=0.97).run(pool, 3, ctx).selected == ["s1", "s2", "s3"]
    # budget larger than what passes: a warning, and the 3 that pass
    with pytest.warns(UserWarning, match="only 3 samples pass the representation filter"):
        assert METHODS.get("deita")().run(pool, 5, ctx).selected == ["s1", "s3", "s5"]


def test_scores_are_cached_per_judge_identity():
    judge = TableJudge({"Response": onehot(3), "t": onehot(2)})
    pool = Dataset([Record(id=f"r{i}", instruction=f"t{i}", output="o") for i in range(4)])
    SCORERS.get("deita")().score(pool, Context(judge=judge, progress=False))
    assert judge.calls == 8
    SCORERS.get("deita")().score(pool, Context(judge=judge, progress=False))
    assert judge.calls == 8
    other = TableJudge(judge.table)
    other.identity = "another-judge"
    SCORERS.get("deita")().score(pool, Context(judge=other, progress=False))
    assert other.calls == 8


def test_judge_without_probabilities_is_a_config_error():
    class TextOnly(Judge):
        identity = "text-only"

    pool = Dataset([Record(id="r", instruction="t", output="o")])
    with pytest.raises(ConfigError, match="the complexity score reads digit probabilities, and the judge text-only"):
        SCORERS.get("deita")().score(pool, Context(judge=TextOnly(), progress=False))
    with pytest.raises(ConfigError, match="prompt must be one of auto, datawinnow, deita"):
        SCORERS.get("deita")(prompt="mine").score(pool, Context(judge=TextOnly(), progress=False))
    with pytest.raises(ConfigError, match="embedding must be one of embedder, model"):
        deita_embeddings(pool, Context(progress=False), "tfidf")


def test_prompts():
    assert complexity_conversation("Q", "deita")[0]["content"] == DEITA_COMPLEXITY_INPUT.format(query="Q")
    own = complexity_conversation("Q", "datawinnow")[0]["content"]
    assert own.endswith("Request:\nQ\n\nDifficulty (1-6):")
    assert "Response:\nA\n\nQuality (1-6):" in quality_conversation("Q", "A", "datawinnow")[0]["content"]


def test_last_token_embeddings_on_tiny_model(tiny_lm):
    import torch

    pool = Dataset([Record(id="a", instruction="Say hi.", output="Hi there!"),
                    Record(id="b", instruction="Add 2 and 3, then explain.", output="5, because 2 + 3 = 5.")])
    ctx = Context(model=tiny_lm, batch_size=2, progress=False)
    emb, _ = deita_embeddings(pool, ctx, "model")
    for r, e in zip(pool, emb):
        ids = tiny_lm.encode(tiny_lm.renderer.prompt(r) + r.output)
        with torch.no_grad():
            h = tiny_lm.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0, -1]
        np.testing.assert_allclose(e, h.numpy(), rtol=1e-4, atol=1e-5)


def test_deita_scorer_checkpoint_path_uses_the_raw_deita_format(tiny_model_dir):
    # any folder/hub id as complexity/quality scorer: loaded once as a raw-text local judge fed DEITA's format
    pool = Dataset([Record(id="a", instruction="Say hi.", output="Hi!")])
    ctx = Context(device="cpu", dtype="fp32", progress=False)
    table = SCORERS.get("deita")(complexity_model=tiny_model_dir, quality_model=tiny_model_dir).score(pool, ctx)
    assert 1.0 <= table.parts["complexity"][0] <= 6.0 and 1.0 <= table.parts["quality"][0] <= 6.0
    assert table.info["complexity"]["prompt"] == "deita" and "|raw|" in table.info["complexity"]["judge"]
    assert not ctx.model_loaded  # the context's own model was never needed
