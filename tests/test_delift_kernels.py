"""Kernels: the cached, batched utility kernel against an obviously-correct slow computation, the
block store (atomic, resumable), similarity transforms, embedding kernels and k-NN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datawinnow.data import load
from datawinnow.data.record import Record
from datawinnow.errors import ConfigError, DataError
from datawinnow.kernels import KernelStore, build_blocked, embedding_kernel, knn, to_similarity, utility_kernel
from datawinnow.kernels.utility import UtilityTokens, distance, logprobs_after_prefix


@pytest.fixture(scope="module")
def warm_lm(tiny_model_dir):
    """The tiny random Llama after 40 quick Adam steps on DELIFT-formatted text, so that token
    probabilities are far from uniform and utilities are non-trivial (random weights give UF ~ 1e-6)."""
    from datawinnow.backends import CausalLM

    lm = CausalLM.load(tiny_model_dir, device="cpu", dtype="fp32", max_length=256)
    ds = load("bundled:alpaca_en_demo")
    tok = UtilityTokens(lm)
    seqs = []
    for i in range(48):
        p = tok.with_example_pair(ds[i], ds[i + 1])
        seqs.append((p.prompt + p.response)[:160])
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), lm.tokenizer.pad_token_id)
    mask = torch.zeros_like(ids)
    for b, s in enumerate(seqs):
        ids[b, :len(s)], mask[b, :len(s)] = torch.tensor(s), 1
    labels = ids.masked_fill(mask == 0, -100)
    torch.manual_seed(0)
    opt = torch.optim.Adam(lm.model.parameters(), lr=1e-2)
    lm.model.train()
    for _ in range(40):
        b = torch.randint(0, len(seqs), (8,))
        loss = lm.model(input_ids=ids[b], attention_mask=mask[b], labels=labels[b]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    lm.model.eval()
    return lm


def slow_logprobs(lm, ids: list[int], n_prompt: int) -> np.ndarray:
    """Obviously correct: one uncached forward over the whole sequence, full logits, pick y_t."""
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits, -1)
    return np.array([lp[t - 1, ids[t]].item() for t in range(n_prompt, len(ids))])


EXAMPLE_HEAD_TEXT = ("Instruction:\nUse the following example as a guide to answer the query in the same format "
                     "and style, providing a clear and concise response.\n\n\nExample:\n")
NO_EXAMPLE_TEXT = "Instruction: Please generate a response to the following query.\n\n\nQuery: "


def whole(lm, text: str) -> list[int]:
    """A prompt text tokenized at once, after the start token (the tokenizer's BOS)."""
    return [lm.tokenizer.bos_token_id] + lm.tokenizer(text, add_special_tokens=False)["input_ids"]


def slow_utility(lm, target: Record, example: Record) -> float:
    """UF[i, j] re-encoding [example; query; response] and [query; response] from scratch, each prompt
    text tokenized as one string and the response on its own."""
    y = lm.tokenizer(target.output, add_special_tokens=False)["input_ids"]
    base_prompt = whole(lm, f"{NO_EXAMPLE_TEXT}{target.prompt}\n")
    cond_prompt = whole(lm, f"{EXAMPLE_HEAD_TEXT}{example.prompt}\n{example.output}\n\n\nQuery:\n{target.prompt}\n")

    def d(prompt):
        p = np.exp(slow_logprobs(lm, prompt + y, len(prompt)))
        return np.linalg.norm(p - 1) / np.sqrt(len(p))

    return d(base_prompt) - d(cond_prompt)


@pytest.fixture(scope="module")
def short_records():
    # short enough that no truncation happens at max_length = 256, so the slow path needs none
    ds = load("bundled:alpaca_en_demo")
    return [r for r in ds if len(r.prompt) + len(r.output) < 160][:5]


def test_prompt_forms(warm_lm, short_records):
    tok = UtilityTokens(warm_lm)
    t, e = short_records[0], short_records[1]
    text = warm_lm.tokenizer.decode(tok.with_example_pair(t, e).prompt)
    assert text == (f"<|im_start|>Instruction:\nUse the following example as a guide to answer the query in the same "
                    f"format and style, providing a clear and concise response.\n\n\nExample:\n{e.prompt}\n{e.output}"
                    f"\n\n\nQuery:\n{t.prompt}\n")
    base = tok.no_example_pair(t)
    assert warm_lm.tokenizer.decode(base.prompt) == (
        f"<|im_start|>Instruction: Please generate a response to the following query.\n\n\nQuery: {t.prompt}\n")
    assert warm_lm.tokenizer.decode(base.response) == t.output


def test_prompts_are_tokenized_as_one_string(warm_lm, short_records):
    tok = UtilityTokens(warm_lm)
    enc = warm_lm.encode
    t, e = short_records[0], short_records[1]
    base = tok.no_example_pair(t).prompt
    assert base == whole(warm_lm, f"{NO_EXAMPLE_TEXT}{t.prompt}\n")
    # the piecewise tokenization ("...Query: " then x_i) is a split the tokenizer never produces for this text
    assert base != whole(warm_lm, "")[:1] + enc(NO_EXAMPLE_TEXT) + enc(t.prompt) + enc("\n")
    assert tok.with_example_pair(t, e).prompt == whole(
        warm_lm, f"{EXAMPLE_HEAD_TEXT}{e.prompt}\n{e.output}\n\n\nQuery:\n{t.prompt}\n")


def test_kv_cached_logprobs_equal_uncached_forward(warm_lm, short_records):
    tok = UtilityTokens(warm_lm)
    ex = short_records[0]
    prefix = tok.example(ex)
    parts = tok.parts_after(ex, short_records)
    assert all(p is not None for p in parts)  # clean boundaries: every pair reuses the prefix
    fast = logprobs_after_prefix(warm_lm, prefix, parts, batch_size=2)  # mixed lengths, right padding
    for r, (q, y), got in zip(short_records, parts, fast):
        # prefix + query part is exactly the whole prompt's own tokenization
        assert prefix + q == whole(warm_lm, f"{EXAMPLE_HEAD_TEXT}{ex.prompt}\n{ex.output}\n\n\nQuery:\n{r.prompt}\n")
        ref = slow_logprobs(warm_lm, prefix + q + y, len(prefix) + len(q))
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-4)


def test_merged_boundary_falls_back_to_the_whole_string(warm_lm, short_records):
    import copy

    from datawinnow.backends import CausalLM

    # a tokenizer with a token for four newlines (as real vocabularies have whitespace-run tokens): an example
    # response ending in a newline joins the query's "\n\n\n", so the whole prompt's tokens do not begin with
    # the example prefix's own tokens
    tokenizer = copy.deepcopy(warm_lm.tokenizer)
    tokenizer.add_tokens(["\n\n\n\n"])
    model = copy.deepcopy(warm_lm.model)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    lm = CausalLM(model, tokenizer, identity="warm+nl4", max_length=256)
    ex = Record(id="nl", instruction=short_records[1].instruction, output=short_records[1].output + "\n")
    recs = short_records[:3]
    tok = UtilityTokens(lm)
    assert tok.parts_after(ex, recs) == [None, None, None]
    assert all(p is not None for p in tok.parts_after(recs[0], recs))
    k = utility_kernel(lm, recs, [ex, recs[0]], batch_size=2, progress=False, use_cache=False)
    assert k.info["pairs_from_scratch"] == 3
    ref = np.array([[slow_utility(lm, t, e) for t in recs] for e in (ex, recs[0])])
    assert ref.max() - ref.min() > 1e-3
    np.testing.assert_allclose(np.asarray(k.matrix), ref, atol=1e-4)


def test_long_target_is_cut_on_text_and_fits(warm_lm):
    from datawinnow.backends import CausalLM

    lm = CausalLM(warm_lm.model, warm_lm.tokenizer, identity="warm", max_length=96)
    ds = load("bundled:alpaca_en_demo")
    long = Record(id="long", instruction=" ".join(r.instruction for r in ds[:8]), output=ds[0].output * 4)
    tok = UtilityTokens(lm)
    query, resp = tok.target(long)
    assert long.prompt.endswith(query) and len(query) < len(long.prompt)  # the query keeps its end
    pair = tok.no_example_pair(long)
    assert len(pair) <= 96 and len(resp) == 48  # the response keeps half the window
    assert len(pair) >= 94  # and the query as much of the rest as fits
    assert pair.prompt == whole(lm, f"{NO_EXAMPLE_TEXT}{query}\n")
    assert pair.response == lm.encode(long.output)[:48]
    assert tok.with_example_pair(long, ds[1]).response == pair.response  # both forms score the same tokens
    tiny = UtilityTokens(CausalLM(warm_lm.model, warm_lm.tokenizer, identity="warm", max_length=24))
    assert tiny.target(long)[0] == "" and len(tiny.no_example_pair(long).response) >= 1  # the head alone overflows


def test_utility_kernel_equals_slow_reference(warm_lm, short_records):
    recs = short_records
    ref = np.array([[slow_utility(warm_lm, recs[i], recs[j]) for i in range(len(recs))] for j in range(len(recs))])
    assert ref.max() - ref.min() > 1e-3  # the comparison below is not trivially satisfied
    dense = utility_kernel(warm_lm, recs, recs, batch_size=2, block_size=2, progress=False)
    np.testing.assert_allclose(np.asarray(dense.matrix), ref, atol=1e-4)  # K[j, i] = UF[i, j]
    nb = np.array([[i, (i + 1) % 5, (i + 3) % 5] for i in range(5)])  # each target's "nearest" examples
    sparse = utility_kernel(warm_lm, recs, recs, mode="sparse", neighbour_idx=nb, batch_size=3, block_size=2,
                            progress=False, use_cache=False)
    m = sparse.matrix.toarray()
    for i in range(5):
        for j in range(5):
            expect = ref[j, i] if j in nb[i] else 0.0
            assert m[j, i] == pytest.approx(expect, abs=1e-4)
    assert sparse.matrix.nnz == 15
    assert distance(np.zeros(4)) == 0.0 and distance(np.log(np.full(4, 0.5))) == pytest.approx(0.5)


def test_utility_kernel_cache_resumes_by_block(warm_lm, short_records, monkeypatch):
    import datawinnow.kernels.utility as U

    calls = []
    real = U.logprobs_after_prefix

    def counting(lm, prefix, parts, **kw):
        calls.append(len(parts))
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed while computing the second block (examples 2-3)
        return real(lm, prefix, parts, **kw)

    monkeypatch.setattr(U, "logprobs_after_prefix", counting)
    with pytest.raises(KeyboardInterrupt):
        utility_kernel(warm_lm, short_records, short_records, block_size=2, progress=False, per_example=True)
    assert calls == [5, 5, 5]
    monkeypatch.setattr(U, "logprobs_after_prefix", lambda *a, **k: (calls.append("resumed"), real(*a, **k))[1])
    calls.clear()
    full = utility_kernel(warm_lm, short_records, short_records, block_size=2, progress=False, per_example=True)
    assert calls == ["resumed"] * 3  # block 0 (examples 0-1) came from the store
    assert isinstance(full.matrix, np.memmap)
    calls.clear()
    again = utility_kernel(warm_lm, short_records, short_records, block_size=2, progress=False, per_example=True)
    assert calls == [] and np.array_equal(np.asarray(again.matrix), np.asarray(full.matrix))


def test_empty_response_is_a_data_error(warm_lm):
    bad = Record(id="r1", instruction="Say nothing", input="", output="  ")
    with pytest.raises(DataError, match="record 'r1' has an empty response"):
        utility_kernel(warm_lm, [bad], [bad], progress=False, use_cache=False)
    with pytest.raises(ConfigError, match="needs each target's nearest examples"):
        utility_kernel(warm_lm, [], [], mode="sparse", progress=False)


def test_build_blocked_skips_finished_blocks(tmp_path):
    store = KernelStore("test", {"x": 1}, root=tmp_path)
    done = []

    def compute(s, e, advance):
        done.append(s)
        if s == 4:
            raise RuntimeError("killed")
        return np.full((e - s, 3), s, dtype=np.float32), (e - s) * 3

    with pytest.raises(RuntimeError):
        build_blocked(store, shape=(6, 3), block_size=2, compute=compute, sparse=False, progress=False)
    assert store.done_blocks() == {0, 2}
    assert not list(store.dir.glob("*.tmp"))  # atomic writes leave no partial files
    done.clear()
    m = build_blocked(store, shape=(6, 3), block_size=2, sparse=False, progress=False,
                      compute=lambda s, e, advance: (done.append(s), (np.full((e - s, 3), s, np.float32), 0))[1])
    assert done == [4]
    assert m[:, 0].tolist() == [0, 0, 2, 2, 4, 4]
    assert store.done_blocks() == set() and (store.dir / "kernel.npy").exists()


def test_similarity_transforms_are_joint():
    import scipy.sparse as sp

    a = np.array([[-1.0, 0.0], [1.0, 3.0]], dtype=np.float32)
    b = np.array([[2.0], [-1.0]], dtype=np.float32)
    (sa, sb), info = to_similarity([a, b], "minmax")
    # one range over both matrices: min -1, max 3 -> (u + 1) / 4
    assert info["min"] == -1.0 and info["max"] == 3.0
    np.testing.assert_allclose(sa, [[0.0, 0.25], [0.5, 1.0]])
    np.testing.assert_allclose(sb, [[0.75], [0.0]])
    (ca,), _ = to_similarity([a], "clip")
    np.testing.assert_allclose(ca, [[0.0, 0.0], [1.0, 3.0]])
    (spm,), _ = to_similarity([sp.csr_matrix(a)], "minmax")
    assert spm.toarray()[1, 1] == 1.0
    with pytest.raises(ConfigError, match="similarity must be one of minmax, clip"):
        to_similarity([a], "softmax")


def test_embedding_kernel_dense_and_sparse():
    e = np.array([[1, 0], [0, 1], [-1, 0], [0.6, 0.8]], dtype=np.float32)
    dense = embedding_kernel(e, e)
    # (cos + 1) / 2: e0.e1 = 0 -> .5, e0.e2 = -1 -> 0, e0.e3 = .6 -> .8
    assert dense[0].tolist() == pytest.approx([1.0, 0.5, 0.0, 0.8])
    sparse = embedding_kernel(e, e, mode="sparse", k=2).toarray()
    # each target (column) keeps its 2 nearest examples: target 0 -> examples 0 and 3
    assert np.flatnonzero(sparse[:, 0]).tolist() == [0, 3]
    assert (np.count_nonzero(sparse, axis=0) == 2).all()
    for i, j in zip(*np.nonzero(sparse)):
        assert sparse[i, j] == pytest.approx(dense[i, j])


def test_knn_backends_agree():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    i1, s1 = knn(x[:6], x, 5, backend="faiss")
    i2, s2 = knn(x[:6], x, 5, backend="sklearn")
    assert (i1 == i2).all() and np.allclose(s1, s2, atol=1e-5)
    assert (i1[:, 0] == np.arange(6)).all()  # itself first
    with pytest.raises(ConfigError, match="knn backend must be one of"):
        knn(x, x, 2, backend="annoy")
