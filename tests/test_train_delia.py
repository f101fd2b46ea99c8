"""DELIA: the cache builder (resumable), the seeded mix, the new token and its per-token loss."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from datawinnow.data import load, write
from datawinnow.data.record import Dataset, Record
from datawinnow.errors import ConfigError, DataError
from datawinnow.evaluate.contamination import training_data_from_adapter
from datawinnow.train.delia import build_cache, mix_cache, n_mixed


def _ds(n, prefix="d"):
    return Dataset([Record(id=f"{prefix}{i}", instruction=f"Question {prefix}{i}?", output=f"Answer {i}.")
                    for i in range(n)])


def test_mix_has_exact_size_and_is_seeded():
    src, cache = _ds(10), _ds(50, "c")
    mixed, info = mix_cache(src, cache, 2.5, seed=3)
    # int(10 x 2.5) = 25 cache samples + the 10 downstream ones
    assert len(mixed) == 35 and info["mixed_in"] == 25
    assert set(src.ids) <= set(mixed.ids)
    assert sum(i.startswith("delia:c") for i in mixed.ids) == 25
    again, _ = mix_cache(src, cache, 2.5, seed=3)
    assert again.ids == mixed.ids                      # same seed, same mix and order
    other, _ = mix_cache(src, cache, 2.5, seed=4)
    assert other.ids != mixed.ids
    assert mixed.ids != src.ids + [i for i in mixed.ids if i.startswith("delia:")]  # shuffled together
    # the whole cache when it is smaller than asked for
    allc, info = mix_cache(src, _ds(7, "c"), 2.0, seed=0)
    assert len(allc) == 17 and info["requested"] == 20 and info["mixed_in"] == 7
    assert n_mixed(100, 0.29) == 29 and n_mixed(3, 0.5) == 1
    with pytest.raises(ConfigError, match="diverse ratio must be >= 0"):
        mix_cache(src, cache, -1)


def test_build_cache_writes_messages_and_resumes(tiny_lm, tmp_path):
    queries = _ds(5, "q")
    out = tmp_path / "cache.jsonl"
    info = build_cache(queries, tiny_lm, out, batch_size=2, max_new_tokens=6, seed=1, progress=False)
    assert info["written"] == 5 and info["generated"] == 5
    full = out.read_text()
    rows = [json.loads(l) for l in full.splitlines()]
    assert [r["id"] for r in rows] == queries.ids       # query order
    # a killed run: two finished lines, then a half-written one; it is dropped and the rest redone
    kept = [l for l in full.splitlines() if json.loads(l)["id"] in ("q0", "q1")]
    out.write_text("\n".join(kept) + '\n{"id": "q3", "mess')
    info = build_cache(queries, tiny_lm, out, batch_size=2, max_new_tokens=6, seed=1, progress=False)
    assert info == {**info, "written": 5, "generated": 3, "resumed": 2}
    assert out.read_text() == full                      # what the uninterrupted run wrote
    assert rows[0]["messages"][0] == {"role": "user", "content": "Question q0?"}
    assert rows[0]["messages"][1]["role"] == "assistant"
    # readable as chat-messages data; the same seed reproduces the same answers
    cache = load(str(out))
    assert len(cache) == 5 and cache.format.startswith("messages")
    out.write_text('not json\n{"id": "x"}\n')
    with pytest.raises(DataError, match="line 1"):
        build_cache(queries, tiny_lm, out, progress=False)


def test_new_token_is_added_and_its_row_trains(tiny_model_dir, tmp_path):
    from datawinnow.backends import CausalLM
    from datawinnow.train import TrainConfig, train

    src = tmp_path / "data.jsonl"
    write(Dataset([Record(id=f"s{i}", instruction=f"List {i}", output=f"one <sep> two <sep> three {i}")
                   for i in range(8)]), str(src))
    cache = tmp_path / "cache.jsonl"
    cache.write_text("".join(json.dumps({"id": f"c{i}", "messages": [
        {"role": "user", "content": f"Say {i}"}, {"role": "assistant", "content": f"I say {i}."}]}) + "\n"
        for i in range(6)))
    base = CausalLM.load(tiny_model_dir, device="cpu", dtype="fp32")
    assert "<sep>" not in base.tokenizer.get_vocab()
    cfg = TrainConfig(method="delia", model=tiny_model_dir, cache=str(cache), diverse_ratio=0.5, new_token="<sep>",
                      epochs=4, batch_size=4, max_length=64, learning_rate=5e-2, progress=False)
    out = tmp_path / "ad"
    res = train(str(src), cfg, str(out))
    lm = res.info["lm"]
    tid = lm.tokenizer.convert_tokens_to_ids("<sep>")
    assert res.info["new_token_ids"] == [tid] and tid == len(base.tokenizer)
    assert lm.tokenizer.encode("a <sep> b", add_special_tokens=False).count(tid) == 1
    # the row changed from its random initialisation
    token_adapter = res.info["trainer"].model.get_input_embeddings().token_adapter
    original = token_adapter.trainable_tokens_original["default"]
    row = token_adapter.trainable_tokens_delta["default"][0].detach()  # the trained row (what is saved)
    trained = lm.model.get_input_embeddings().weight[tid].detach()   # in the model's dtype
    assert torch.equal(trained, row.to(trained.dtype))
    assert float((row.float() - original[0].float()).abs().max()) > 1e-3
    # mixed: 8 + int(8 x 0.5) = 12 samples seen; the manifest names the cache samples by their cache ids
    man = json.loads((out / "data_manifest.json").read_text())
    assert len(man["ids"]) == 12 and man["delia"]["mixed_in"] == 4
    drawn = man["mixed_in"][0]["ids"]
    assert man["mixed_in"][0]["source"] == str(cache) and len(drawn) == 4 and set(drawn) <= {f"c{i}" for i in range(6)}
    assert sorted(i for i in man["ids"] if i.startswith("delia:")) == sorted(f"delia:{i}" for i in drawn)
    # so the contamination check reads back all 12, the cache samples with their text
    seen = training_data_from_adapter(str(out))
    assert sorted(seen.ids) == sorted(man["ids"])
    assert seen[seen.index_of(f"delia:{drawn[0]}")].output == f"I say {drawn[0][1:]}."
    # per-token loss reported before and after, and it went down
    report = json.loads((out / "token_loss.json").read_text())
    assert report["before"]["<sep>"]["count"] == 16
    assert report["after"]["<sep>"]["mean_loss"] < report["before"]["<sep>"]["mean_loss"]
    # the adapter reloads with the token and the trained row (trained in the auto dtype, whatever it is)
    again = CausalLM.load(f"{tiny_model_dir}+{out}", device="cpu", dtype="fp32")
    assert again.tokenizer.convert_tokens_to_ids("<sep>") == tid
    np.testing.assert_allclose(again.model.get_input_embeddings().weight[tid].detach().numpy(),
                               row.float().cpu().numpy(), atol=1e-6)
