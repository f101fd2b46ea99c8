"""The DELIFT utility kernel, teacher-forced, with the example's KV cache reused across targets.

For a target ``i`` and an in-context example ``j`` (SPEC section 3)::

    UF[i, j] = d(y_i | x_i) - d(y_i | x_j, y_j, x_i),   d = ||p - 1||_2 / sqrt(T)

where ``p_t`` is the probability of the ground-truth response token ``y_t`` (teacher forcing, the
``T`` response tokens only). Positive: the example helps the model produce ``y_i``.

Prompts (DELIFT's teacher-forced reference; plain text, no chat template, after the model's start
token by the backend's start-token rule)::

    no example:   "Instruction: Please generate a response to the following query.\\n\\n\\nQuery: {x_i}\\n" + y_i
    with example: "Instruction:\\nUse the following example as a guide ...\\n\\n\\nExample:\\n{x_j}\\n{y_j}"
                  + "\\n\\n\\nQuery:\\n{x_i}\\n" + y_i

Each prompt text (everything before ``y_i``) is tokenized as one string, and ``y_i`` on its own, so
both forms score exactly the same response tokens and every prompt is a tokenization the tokenizer
itself produces. Truncation works on text, at token boundaries: ``x_i`` keeps its end (so that the
no-example pair fits ``max_length``, the response keeping at least half), the example's
``{x_j}\\n{y_j}`` keeps its first ``max_length`` tokens; both forms use the same shortened ``x_i``.

Cost reducers: the example comes first, so its prefix (the start token, the instruction and
``{x_j}\\n{y_j}``, tokenized as one string) is encoded once (``past_key_values``) and shared,
expanded without copying, by length-sorted batches of targets; a block of examples goes through
at once (:func:`logprobs_after_prefixes`: prefixes of similar length encoded together, each target
row reading its own example's cache, token-budget batches), so the per-call overhead is paid per
block, not per example and target batch. That is exact only where the
whole prompt's tokenization begins with the prefix's own tokens; each pair's whole prompt is
tokenized (a fast batched call, negligible beside the forward passes) and checked, and a pair
whose boundary merges (e.g. an example response ending in whitespace that joins the query's
newlines) is computed from scratch on its whole-string tokenization instead. Logits are computed
only at response positions, the LM head and log-softmax in float32. Dense mode scores all pairs, sparse mode each target against its ``k``
nearest examples (indices given by the caller, e.g. from sentence embeddings). Kernel rows (one
per example) are stored by block in a :class:`~datawinnow.kernels.store.KernelStore`, so a killed
run resumes at the block it was in.

The kernel returned is candidate-major: ``K[j, i] = UF[i, j]`` (stored row = example).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ..backends.causal_lm import Pair, to_numpy
from ..cache import stable_hash
from ..data.record import Record
from ..errors import ConfigError, DataError
from .store import KernelStore, build_blocked, storage_dtype

NO_EXAMPLE_HEAD = "Instruction: Please generate a response to the following query.\n\n\nQuery: "
EXAMPLE_HEAD = ("Instruction:\nUse the following example as a guide to answer the query in the same format and "
                "style, providing a clear and concise response.\n\n\nExample:\n")
QUERY_AFTER_EXAMPLE = "\n\n\nQuery:\n"
PROMPT_VERSION = "delift-tf-2"  # 2: whole-string prompt tokenization, start-token rule
MODES = ("dense", "sparse")
BLOCK_PAIRS = 1024  # default size of one cached block of the kernel, in pairs


def distance(logprobs: np.ndarray) -> float:
    """d = ||p - 1||_2 / sqrt(T) from per-token log-probabilities (0: every token certain)."""
    p = np.exp(np.asarray(logprobs, dtype=np.float64))
    return float(np.sqrt(np.mean((p - 1.0) ** 2))) if len(p) else float("nan")


@dataclass
class UtilityTokens:
    """DELIFT's two prompt forms for one model, each prompt text tokenized as one string (see the module
    docstring); the response is tokenized on its own, so both forms score the same response tokens."""

    lm: Any
    _targets: dict[str, tuple[str, list[int]]] = field(default_factory=dict)
    _examples: dict[str, tuple[str, list[int]]] = field(default_factory=dict)

    def __post_init__(self):
        self.tokenizer = self.lm.tokenizer
        self.max_length = self.lm.max_length

    def _cut(self, text: str, keep: int, *, from_end: bool) -> str:
        """``text`` shortened to its first (or last) ``keep`` tokens, cut at a token boundary of its own tokenization."""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=self.tokenizer.is_fast)
        ids = enc["input_ids"]
        if len(ids) <= keep:
            return text
        if keep <= 0:
            return ""
        if not self.tokenizer.is_fast:  # no offsets: decode the kept tokens
            kept = ids[len(ids) - keep:] if from_end else ids[:keep]
            return self.tokenizer.decode(kept)
        offsets = enc["offset_mapping"]
        return text[offsets[len(ids) - keep][0]:] if from_end else text[:offsets[keep - 1][1]]

    def _no_example_prompt(self, query: str) -> list[int]:
        return self.lm.prompt_ids(f"{NO_EXAMPLE_HEAD}{query}\n")

    def target(self, r: Record) -> tuple[str, list[int]]:
        """(query text, response ids) of a target: the query shortened from its start and the response
        from its end so that the no-example pair fits ``max_length`` (the response keeps at least half)."""
        key = r.content_key()
        if key not in self._targets:
            if not r.output.strip():
                raise DataError(f"record '{r.id}' has an empty response; the utility kernel needs one",
                                field="output")
            query, resp = r.prompt, self.lm.encode(r.output)
            prompt = self._no_example_prompt(query)
            if len(prompt) + len(resp) > self.max_length:
                r_keep = min(len(resp), max(self.max_length - len(prompt), self.max_length // 2))
                budget = self.max_length - r_keep
                n_query = len(self.lm.encode(query))
                keep = max(0, n_query - (len(prompt) - budget))
                while len(prompt) > budget and keep >= 0:  # junction merges can shift the count by a token
                    query = self._cut(r.prompt, keep, from_end=True).lstrip()
                    prompt = self._no_example_prompt(query)
                    keep -= 1
                resp = resp[:max(1, min(r_keep, self.max_length - len(prompt)))]
            self._targets[key] = (query, resp)
        return self._targets[key]

    def example_text(self, r: Record) -> str:
        """The example prefix's text: the instruction, then ``{x_j}\\n{y_j}`` (its first ``max_length`` tokens)."""
        return self._example(r)[0]

    def example(self, r: Record) -> list[int]:
        """The example prefix's token ids (start token, instruction, example; one string)."""
        return self._example(r)[1]

    def _example(self, r: Record) -> tuple[str, list[int]]:
        key = r.content_key()
        if key not in self._examples:
            text = EXAMPLE_HEAD + self._cut(f"{r.prompt}\n{r.output}", self.max_length, from_end=False)
            self._examples[key] = (text, self.lm.prompt_ids(text))
        return self._examples[key]

    def with_example_text(self, target: Record, example: Record) -> str:
        """The whole with-example prompt text (everything before the target's response)."""
        return f"{self.example_text(example)}{QUERY_AFTER_EXAMPLE}{self.target(target)[0]}\n"

    def no_example_pair(self, r: Record) -> Pair:
        query, resp = self.target(r)
        return Pair(self._no_example_prompt(query), list(resp))

    def with_example_pair(self, target: Record, example: Record) -> Pair:
        """The full [example; query; response] sequence, its prompt tokenized as one string (what the
        reference re-encodes per pair)."""
        return Pair(self.lm.prompt_ids(self.with_example_text(target, example)), list(self.target(target)[1]))

    def parts_after(self, example: Record, targets: Sequence[Record]) -> list[tuple[list[int], list[int]] | None]:
        """Per target: (query-part ids, response ids) such that ``example(example) + query part`` is the whole
        with-example prompt's own tokenization, or None where that tokenization does not begin with the
        prefix's tokens (the boundary merged; that pair needs the from-scratch path)."""
        prefix = self.example(example)
        start = self.lm.start_ids()
        texts = [self.with_example_text(t, example) for t in targets]
        out: list[tuple[list[int], list[int]] | None] = []
        for t, ids in zip(targets, self.tokenizer(texts, add_special_tokens=False)["input_ids"]):
            if ids[:len(start)] != start:
                ids = start + ids
            ok = len(ids) > len(prefix) and ids[:len(prefix)] == prefix
            out.append((ids[len(prefix):], list(self.target(t)[1])) if ok else None)
        return out


def logprobs_after_prefix(lm, prefix: list[int], parts: Sequence[tuple[list[int], list[int]]], *,
                          batch_size: int = 8) -> list[np.ndarray]:
    """log p(y_t) of each part's response given ``prefix + query part``, the prefix encoded once.

    The prefix's KV cache is computed once (:meth:`CausalLM.prefix_cache`), then expanded (a view, no copy)
    to each length-sorted batch of ``batch_size`` targets (:meth:`CausalLM.response_logprobs_after`); the
    batch is right-padded, so positions continue from the prefix unchanged.
    """
    if not parts:
        return []
    cache = lm.prefix_cache([prefix])
    pairs = [Pair(list(q), list(r)) for q, r in parts]
    out: list[np.ndarray | None] = [None] * len(parts)
    for idx in lm.plan([len(p) for p in pairs], batch_size=batch_size):
        for i, lp in zip(idx, lm.response_logprobs_after(cache, [pairs[i] for i in idx])):
            out[i] = lp
    return out  # type: ignore[return-value]


def logprobs_after_prefixes(lm, jobs: Sequence[tuple[list[int], Sequence[tuple[list[int], list[int]]]]], *,
                            batch_tokens: int | str | None = "auto") -> list[list[np.ndarray]]:
    """:func:`logprobs_after_prefix` for many prefixes at once: per job ``(prefix, parts)``, the log p(y_t) of
    each part's response given ``prefix + query part``.

    Prefixes of similar length form groups (length-sorted token-budget batches, see
    :meth:`CausalLM.plan`); a group's prefixes are encoded in one right-padded forward pass
    (:meth:`CausalLM.prefix_cache`), and each of its (prefix, part) rows reads its own prefix's KV cache
    (:meth:`CausalLM.response_logprobs_after`: gathered across the row batch, the padded prefix positions
    masked out, the part's position ids continuing from its prefix's real length). The rows of a group go
    through in length-sorted token-budget batches, a row costing its prefix's padded width plus its own. So
    a block of examples costs a few forward passes, not one per example and per target batch.
    """
    out: list[list[np.ndarray | None]] = [[None] * len(parts) for _, parts in jobs]
    live = [j for j, (_, parts) in enumerate(jobs) if parts]
    if not live:
        return out  # type: ignore[return-value]
    budget = lm.resolve_batch_tokens(batch_tokens if batch_tokens is not None else "auto")
    for group in lm.plan([len(jobs[j][0]) for j in live], batch_tokens=budget):
        members = [live[g] for g in group]
        cache = lm.prefix_cache([jobs[j][0] for j in members])
        rows = [(g, k) for g, j in enumerate(members) for k in range(len(jobs[j][1]))]
        pairs = [Pair(*map(list, jobs[members[g]][1][k])) for g, k in rows]
        left = max(1, budget - cache.width) if budget is not None else None
        for idx in lm.plan([len(p) for p in pairs], batch_tokens=left):
            lps = lm.response_logprobs_after(cache, [pairs[i] for i in idx], rows=[rows[i][0] for i in idx])
            for i, lp in zip(idx, lps):
                g, k = rows[i]
                out[members[g]][k] = lp
    return out  # type: ignore[return-value]


@dataclass
class ExampleLogprobs:
    values: list[np.ndarray]  # per target, log p(y_t) given [example; query]
    fallback: int  # how many of them were computed from scratch


def example_target_logprobs(lm, tokens: UtilityTokens, example: Record, targets: Sequence[Record], *,
                            batch_size: int = 8) -> ExampleLogprobs:
    """log p(y_t | example, x_i, y_<t) for each target: through the example's shared KV prefix where the
    whole prompt's tokenization begins with the prefix's tokens, from scratch (whole sequence) elsewhere."""
    parts = tokens.parts_after(example, targets)
    out: list[np.ndarray | None] = [None] * len(targets)
    fast = [i for i, p in enumerate(parts) if p is not None]
    if fast:
        for i, lp in zip(fast, logprobs_after_prefix(lm, tokens.example(example), [parts[i] for i in fast],
                                                     batch_size=batch_size)):
            out[i] = lp
    slow = [i for i, p in enumerate(parts) if p is None]
    if slow:
        pairs = [tokens.with_example_pair(targets[i], example) for i in slow]
        for idx, lps in lm.iter_batches(pairs, batch_size):
            for k, lp in zip(idx, lps):
                out[slow[k]] = lp
    return ExampleLogprobs(out, len(slow))  # type: ignore[arg-type]


def block_target_logprobs(lm, tokens: UtilityTokens, examples: Sequence[Record],
                          targets: Sequence[Sequence[Record]], *, batch_tokens: int | str | None = "auto",
                          batch_size: int = 8) -> list[ExampleLogprobs]:
    """:func:`example_target_logprobs` for a block of examples at once (``targets[e]``: example ``e``'s
    targets): the shared-prefix pairs of every example through :func:`logprobs_after_prefixes`, the pairs
    whose boundary merged from scratch in length-sorted batches."""
    parts = [tokens.parts_after(ex, ts) for ex, ts in zip(examples, targets)]
    fast = [[k for k, p in enumerate(ps) if p is not None] for ps in parts]
    jobs = [(tokens.example(ex), [ps[k] for k in ks]) for ex, ps, ks in zip(examples, parts, fast)]
    values: list[list[np.ndarray | None]] = [[None] * len(ts) for ts in targets]
    for e, lps in enumerate(logprobs_after_prefixes(lm, jobs, batch_tokens=batch_tokens)):
        for k, lp in zip(fast[e], lps):
            values[e][k] = lp
    slow = [(e, k) for e, ps in enumerate(parts) for k, p in enumerate(ps) if p is None]
    if slow:
        pairs = [tokens.with_example_pair(targets[e][k], examples[e]) for e, k in slow]
        for idx, lps in lm.iter_batches(pairs, batch_size, batch_tokens):
            for i, lp in zip(idx, lps):
                values[slow[i][0]][slow[i][1]] = lp
    n_slow = [0] * len(examples)
    for e, _ in slow:
        n_slow[e] += 1
    return [ExampleLogprobs(v, n) for v, n in zip(values, n_slow)]  # type: ignore[arg-type]


@torch.inference_mode()
def full_logprobs(lm, pair: Pair) -> np.ndarray:
    """The obvious computation: one uncached forward pass over the whole sequence, full logits at every
    position (float32 head and log-softmax, as the fast path)."""
    hidden, _ = lm.hidden_states([pair.prompt + pair.response])
    lp = lm.fp32_head().log_softmax(hidden[0])
    start = len(pair.prompt)
    pos = torch.arange(start - 1, start - 1 + len(pair.response), device=lm.device)
    return to_numpy(lp[pos, torch.tensor(pair.response, device=lm.device)])


def utility_pair_reference(lm, target: Record, example: Record, tokens: UtilityTokens | None = None) -> float:
    """UF[i, j] for one pair the slow way: both sequences re-encoded from scratch, full logits.

    The baseline of ``benchmarks/delift_kernel.py`` and the reference of the tests.
    """
    tokens = tokens or UtilityTokens(lm)
    base = distance(full_logprobs(lm, tokens.no_example_pair(target)))
    return base - distance(full_logprobs(lm, tokens.with_example_pair(target, example)))


@dataclass
class UtilityKernel:
    matrix: Any  # candidate-major raw UF: [n_examples, n_targets], dense array/memmap or CSR
    base: np.ndarray  # d(y_i | x_i) per target
    info: dict


class UtilityBlocks:
    """Stored rows ``[s, e)`` of the utility kernel (one row per example): ``(block, pairs)`` per call, dense
    ``[e - s, n_targets]`` float32 or sparse ``(rows relative to s, cols, values)``. What the kernel's block
    loop calls here, and what a Ray worker calls for its blocks. ``base``: d(y_i | x_i) per target;
    ``lists``: sparse mode's targets per example. :attr:`fallback` counts the pairs computed from scratch
    (their prompt's tokenization does not begin with the prefix's)."""

    def __init__(self, lm, targets: Sequence[Record], examples: Sequence[Record], *, mode: str,
                 lists: list[list[int]], base: np.ndarray, batch_size: int = 8,
                 batch_tokens: int | str | None = "auto", per_example: bool = False,
                 tokens: UtilityTokens | None = None):
        self.lm, self.targets, self.examples, self.mode, self.lists = lm, targets, examples, mode, lists
        self.base, self.batch_size, self.batch_tokens, self.per_example = base, batch_size, batch_tokens, per_example
        self.tokens = tokens or UtilityTokens(lm)
        self.fallback = 0

    def units_in(self, s: int, e: int) -> int:
        """Pairs in rows ``[s, e)``."""
        return (e - s) * len(self.targets) if self.mode == "dense" else sum(len(self.lists[j]) for j in range(s, e))

    def _example_logprobs(self, example: Record, idx: list[int]) -> list[np.ndarray]:
        lps = example_target_logprobs(self.lm, self.tokens, example, [self.targets[i] for i in idx],
                                      batch_size=self.batch_size)
        self.fallback += lps.fallback
        return lps.values

    def _block_logprobs(self, s: int, e: int) -> dict[int, list[np.ndarray]]:
        """Per example j of the block with targets: log p(y_t) of its targets (all, or its list)."""
        n_t, dense = len(self.targets), self.mode == "dense"
        js = [j for j in range(s, e) if dense or self.lists[j]]
        idx = {j: list(range(n_t)) if dense else self.lists[j] for j in js}
        got = block_target_logprobs(self.lm, self.tokens, [self.examples[j] for j in js],
                                    [[self.targets[i] for i in idx[j]] for j in js],
                                    batch_tokens=self.batch_tokens or "auto", batch_size=self.batch_size)
        self.fallback += sum(g.fallback for g in got)
        return {j: g.values for j, g in zip(js, got)}

    def __call__(self, s: int, e: int, advance=lambda units: None):
        n_t, base, lists = len(self.targets), self.base, self.lists
        if not self.per_example:
            lps_of = self._block_logprobs(s, e)
            if self.mode == "dense":
                block = np.empty((e - s, n_t), dtype=np.float32)
                for j in range(s, e):
                    block[j - s] = base - np.array([distance(lp) for lp in lps_of[j]])
                advance((e - s) * n_t)
                return block, (e - s) * n_t
            rows, cols, vals = [], [], []
            for j, lps in lps_of.items():
                rows += [j - s] * len(lists[j])
                cols += lists[j]
                vals += [base[i] - distance(lp) for i, lp in zip(lists[j], lps)]
            advance(len(vals))
            return (np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64),
                    np.array(vals, dtype=np.float32)), len(vals)
        if self.mode == "dense":
            block = np.empty((e - s, n_t), dtype=np.float32)
            for j in range(s, e):
                lps = self._example_logprobs(self.examples[j], list(range(n_t)))
                block[j - s] = base - np.array([distance(lp) for lp in lps])
                advance(n_t)
            return block, (e - s) * n_t
        rows, cols, vals = [], [], []
        for j in range(s, e):
            if not lists[j]:
                continue
            lps = self._example_logprobs(self.examples[j], lists[j])
            rows += [j - s] * len(lists[j])
            cols += lists[j]
            vals += [base[i] - distance(lp) for i, lp in zip(lists[j], lps)]
            advance(len(lists[j]))
        return (np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64), np.array(vals, dtype=np.float32)), len(vals)


def stored_blocks(blocks: UtilityBlocks, store: KernelStore | None, storage: str):
    """``(s, e) -> (block, pairs, pairs from scratch)``: :class:`UtilityBlocks` with each block converted to the
    storage dtype and saved in ``store`` (atomically, as the block loop saves it) before it is returned."""
    dt = storage_dtype(storage)

    def compute(s: int, e: int):
        before = blocks.fallback
        block, units = blocks(s, e)
        if blocks.mode == "dense":
            block = np.asarray(block, dtype=dt)
            if store is not None:
                store.save_dense_block(s, block)
        else:
            block = (block[0], block[1], np.asarray(block[2], dtype=dt))
            if store is not None:
                store.save_sparse_block(s, *block)
        return block, units, blocks.fallback - before

    return compute


def make_utility_blocks(ctx, *, targets: list[dict], examples: list[dict], mode: str, lists: list[list[int]],
                        base: list[float], batch_size: int, batch_tokens: int | str | None, per_example: bool,
                        storage: str, store: dict[str, Any] | None):
    """:func:`stored_blocks` on ``ctx.model``: the recipe a Ray worker rebuilds the kernel's block computation
    from (records as dicts; ``store``: the kernel store's ``kind``, ``meta`` and ``root``, or None)."""
    from pathlib import Path

    blocks = UtilityBlocks(ctx.model, [Record(**d) for d in targets], [Record(**d) for d in examples], mode=mode,
                           lists=lists, base=np.asarray(base, dtype=np.float64), batch_size=batch_size,
                           batch_tokens=batch_tokens, per_example=per_example)
    kstore = KernelStore(store["kind"], store["meta"], root=Path(store["root"])) if store is not None else None
    return stored_blocks(blocks, kstore, storage)


def _blocks_on_workers(ctx, blocks: UtilityBlocks, store: KernelStore | None, *, block_size: int, storage: str,
                       progress: bool) -> dict[int, Any]:
    """The kernel's missing blocks, computed by the context's executor (each stored by the worker that
    computed it); ``{start: (block, pairs)}``, which the block loop takes where there is no store."""
    from ..runtime.executor import CallWork
    from ..runtime.progress import progress_bar
    from ..runtime.runner import Recipe

    n_e = len(blocks.examples)
    if store is not None and store.load() is not None:
        return {}
    done = store.done_blocks() if store is not None else set()
    calls = [(s, min(s + block_size, n_e)) for s in range(0, n_e, block_size) if s not in done]
    recipe = None
    if ctx.model_loaded and ctx.model is blocks.lm:
        recipe = Recipe("datawinnow.kernels.utility:make_utility_blocks", {
            "targets": [r.to_dict() for r in blocks.targets], "examples": [r.to_dict() for r in blocks.examples],
            "mode": blocks.mode, "lists": blocks.lists, "base": [float(b) for b in blocks.base],
            "batch_size": blocks.batch_size, "batch_tokens": blocks.batch_tokens, "per_example": blocks.per_example,
            "storage": storage,
            "store": None if store is None else {"kind": store.meta["kind"], "root": str(store.dir.parent.parent),
                                                 "meta": {k: v for k, v in store.meta.items()
                                                          if k not in ("kind", "format")}}})
    work = CallWork.for_context(ctx, "utility kernel", calls, stored_blocks(blocks, store, storage), recipe,
                                unit="block")
    out: dict[int, Any] = {}
    with progress_bar(sum(blocks.units_in(s, e) for s, e in calls), "utility kernel", progress, unit="pair") as bar:
        for k, (block, units, fallback) in ctx.executor.run_calls(work):
            out[calls[k][0]] = (block, units)
            blocks.fallback += fallback
            bar.update(units)
    return out


def utility_kernel(lm, targets: Sequence[Record], examples: Sequence[Record], *, mode: str = "dense",
                   neighbour_idx: np.ndarray | None = None, batch_size: int = 8, block_size: int | None = None,
                   storage: str = "float32", use_cache: bool = True, progress: bool = True,
                   batch_tokens: int | str | None = "auto", per_example: bool = False, ctx=None,
                   neighbours_from: dict | None = None) -> UtilityKernel:
    """The raw utility kernel ``K[j, i] = UF[target i, example j]``.

    ``mode="sparse"`` needs ``neighbour_idx`` ``[n_targets, k]``: the examples each target is scored
    against (the rest of its column stays empty). ``neighbours_from``: how an approximate search found
    them (:meth:`.knn.IndexPlan.as_dict`, e.g. ``{"index": "lists", "nlist": 1000, "nprobe": 16}``); it joins
    the cache key (the neighbours themselves are in it too), an exact search's (None, or ``{"index":
    "exact"}``) leaves the key as it was. ``block_size`` examples form one cached block
    (default: as many as hold about ``BLOCK_PAIRS`` pairs, so a killed run loses little work however
    large the pool).

    Batching: a block's examples go through :func:`block_target_logprobs` (many examples' prefixes and
    their targets in a few forward passes, ``batch_tokens`` tokens each: a number, 'auto' or None for
    the model's auto budget). ``per_example=True`` is the previous path (one example at a time,
    ``batch_size`` targets per pass against its expanded prefix), kept as the benchmark's baseline; both
    give the same kernel. d(y|x) goes in token-budget batches (``batch_size`` targets with ``per_example``).

    ``ctx``: the run's :class:`~datawinnow.runtime.Context`, whose ``lm`` is its model; under a remote
    executor (Ray) the blocks still missing are computed by its workers (:func:`make_utility_blocks`),
    each storing its blocks in the same kernel store, so a killed run resumes either way.
    """
    import time

    if mode not in MODES:
        raise ConfigError(f"kernel must be one of {', '.join(MODES)}, got '{mode}'")
    if (block_size is not None and block_size < 1) or batch_size < 1:
        raise ConfigError("block_size and batch_size must be >= 1")
    dt = storage_dtype(storage)
    n_t, n_e = len(targets), len(examples)
    tokens = UtilityTokens(lm)
    for r in targets:
        tokens.target(r)  # validates responses before any model work
    lists: list[list[int]] = []
    if mode == "sparse":
        if neighbour_idx is None:
            raise ConfigError("the sparse utility kernel needs each target's nearest examples (neighbour_idx)")
        neighbour_idx = np.asarray(neighbour_idx, dtype=np.int64)
        if neighbour_idx.shape[0] != n_t:
            raise ConfigError(f"neighbour_idx has {neighbour_idx.shape[0]} rows for {n_t} targets")
        lists = [[] for _ in range(n_e)]
        for i, row in enumerate(neighbour_idx):
            for j in dict.fromkeys(int(x) for x in row):  # unique, in order
                lists[j].append(i)
    if block_size is None:
        pairs_each = n_t if mode == "dense" else max(1.0, sum(map(len, lists)) / max(1, n_e))
        block_size = int(max(1, min(n_e, BLOCK_PAIRS // pairs_each)))
    meta = {
        "prompts": PROMPT_VERSION, "model": lm.identity, "max_length": lm.max_length, "mode": mode,
        "storage": storage, "targets": stable_hash([r.content_key() for r in targets]),
        "examples": stable_hash([r.content_key() for r in examples]), "block_size": block_size,
        "neighbours": None if mode == "dense" else stable_hash(neighbour_idx.tolist()),
    }
    if mode == "sparse" and neighbours_from and neighbours_from.get("index", "exact") != "exact":
        meta["knn"] = dict(neighbours_from)
    store = KernelStore("utility", meta) if use_cache else None
    t0 = time.perf_counter()

    base = store.load_vector("base") if store is not None else None
    if base is None or len(base) != n_t:
        from ..runtime.progress import progress_bar

        pairs = [tokens.no_example_pair(r) for r in targets]
        base = np.zeros(n_t, dtype=np.float64)
        with progress_bar(n_t, "utility d(y|x)", progress) as bar:
            batches = lm.plan([len(p) for p in pairs], batch_size=batch_size,
                              batch_tokens=None if per_example else batch_tokens or "auto")
            for idx in batches:
                for i, lp in zip(idx, lm.response_logprobs([pairs[i] for i in idx])):
                    base[i] = distance(lp)
                bar.update(len(idx))
        if store is not None:
            store.save_vector("base", base)
    t_base = time.perf_counter() - t0

    blocks = UtilityBlocks(lm, targets, examples, mode=mode, lists=lists, base=base, batch_size=batch_size,
                           batch_tokens=batch_tokens, per_example=per_example, tokens=tokens)
    total = blocks.units_in(0, n_e)
    t1 = time.perf_counter()
    compute, bar = blocks, progress
    if ctx is not None and ctx.executor.remote:
        computed = _blocks_on_workers(ctx, blocks, store, block_size=block_size, storage=storage, progress=progress)
        compute = lambda s, e, advance: computed.pop(s)  # noqa: E731 - reached only without a store
        bar = False
    matrix = build_blocked(store, shape=(n_e, n_t), block_size=block_size, compute=compute, sparse=mode == "sparse",
                           dtype=dt, progress=bar, desc="utility kernel", total_units=total, units_in=blocks.units_in)
    seconds = time.perf_counter() - t1
    info = {"kernel": "utility", "mode": mode, "pairs": total, "targets": n_t, "examples": n_e,
            "seconds_base": round(t_base, 3), "seconds_pairs": round(seconds, 3), "pairs_from_scratch": blocks.fallback,
            "cache_dir": str(store.dir) if store is not None else None}
    return UtilityKernel(matrix, base, info)
