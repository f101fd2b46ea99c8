"""Judge-based methods on the embedded models (slow): SmolLM2-135M as the local judge, MiniLM for DEITA's filter."""

from __future__ import annotations

import numpy as np
import pytest

from datawinnow.data import load
from datawinnow.registry import METHODS, SCORERS
from datawinnow.runtime.context import Context

pytestmark = pytest.mark.slow


@pytest.fixture()
def pool():
    ds = load("bundled:alpaca_en_demo")
    short = sorted(ds[:40], key=lambda r: (len(r.prompt) + len(r.output), r.id))[:4]  # short prompts: CPU time
    return ds.subset([r.id for r in short])


def test_deita_selectit_alpagasus_on_smollm2(smollm2, minilm, pool):
    ctx = Context(model=smollm2, embedder=minilm, batch_size=4, progress=False)
    deita = METHODS.get("deita")().run(pool, 2, ctx)
    assert len(deita.selected) == 2
    table = SCORERS.get("deita")().score(pool, ctx)
    assert ((table.parts["complexity"] >= 1) & (table.parts["complexity"] <= 6)).all()
    assert ((table.parts["quality"] >= 1) & (table.parts["quality"] <= 6)).all()
    np.testing.assert_allclose(table.score, table.parts["complexity"] * table.parts["quality"], rtol=1e-9)
    assert table.info["complexity"]["cached"] == len(pool)  # the method's run filled the cache

    sel = METHODS.get("selectit")(k=2).run(pool, None, ctx)
    assert len(sel.selected) == 1  # 20% of 4, rounded as the budget rules say
    assert all(s is not None and 0 <= s <= 5 for s in sel.scores.values())

    alp = SCORERS.get("alpagasus")(readout="expected").score(pool, ctx)
    assert ((alp.score >= 0) & (alp.score <= 5)).all() and len(set(np.round(alp.score, 6))) > 1
