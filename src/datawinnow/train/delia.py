"""DELIA: mixing self-sampled answers to broad, diverse queries into the downstream training data.

- :func:`build_cache`: the model being tuned answers each query (temperature 0.7, top-p 0.95, up to
  512 new tokens, batched by prompt length) and the pairs are written as chat ``messages`` JSONL
  (DELIA's format). Resumable: each finished batch is appended and fsynced; a rerun skips the ids
  already written (a half-written last line from a killed run is dropped). Batches are planned over
  all queries and each is sampled with a seed derived from its ids, so a resumed run writes what an
  uninterrupted one would (same queries, batch size and seed). An OpenAI-compatible server can answer
  instead of the local model (``generator``; per-query seeds). When
  every query is answered the file is rewritten, atomically, in query order.
- :func:`mix_cache`: the downstream data plus int(len(downstream) x diverse_ratio) cache samples
  (drawn with ``random.Random(seed)``; the whole cache if it is smaller), shuffled together with the
  same generator. Cache ids are prefixed ``delia:`` so the manifest tells them apart; the run info
  lists the cache ids drawn (``cache_ids``), so the adapter's data manifest names every sample the
  model saw and the contamination check reads the cache samples back too.
- :func:`token_losses` / :func:`token_loss_callback`: the per-token loss of chosen tokens (e.g. a
  new special token added with ``--new-token``) before and after training, as DELIA reports it.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..backends.causal_lm import Pair, length_sorted_batches
from ..cache import atomic_write_json, atomic_write_text, stable_hash
from ..data.record import Dataset, Record
from ..errors import ConfigError, DataError

CACHE_PREFIX = "delia:"
TOKEN_LOSS_FILE = "token_loss.json"


# --------------------------------------------------------------------------------------------- cache
def _query_messages(record: Record) -> list[dict[str, str]]:
    return record.chat(with_response=False) if record.messages else [{"role": "user", "content": record.prompt}]


def _read_done(path: Path) -> dict[str, str]:
    """Lines already written: id -> JSON line. Drops a half-written last line (rewriting the file)."""
    done: dict[str, str] = {}
    if not path.exists():
        return done
    lines = path.read_text(encoding="utf-8").splitlines()
    good: list[str] = []
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rid = row["id"]
        except (json.JSONDecodeError, KeyError, TypeError):
            if k == len(lines) - 1:  # the batch in flight when a run was killed
                atomic_write_text(path, "".join(g + "\n" for g in good))
                break
            raise DataError("not a cache line (expected JSON with 'id' and 'messages')", path=str(path), line=k + 1)
        done[rid] = line
        good.append(line)
    return done


def build_cache(queries: Dataset, lm, out: str | os.PathLike, *, batch_size: int = 8, temperature: float = 0.7,
                top_p: float = 0.95, max_new_tokens: int = 512, seed: int = 0, progress: bool = True,
                generator=None) -> dict[str, Any]:
    """Answer every query with ``lm`` and write ``{"id", "messages"}`` JSONL to ``out`` (resumable).

    ``generator``: a :class:`~datawinnow.backends.generator_remote.RemoteGenerator` (an OpenAI-compatible
    server) answers instead (``lm`` may then be None): batches of ``batch_size`` queries in order, each
    query sampled with its own seed derived from ``seed`` and its id, so answers do not depend on batching.
    """
    from ..runtime.progress import progress_bar

    if batch_size < 1 or max_new_tokens < 1:
        raise ConfigError("delia build-cache: batch size and max new tokens must be >= 1")
    if not (temperature >= 0 and 0 < top_p <= 1):
        raise ConfigError(f"delia build-cache: need temperature >= 0 and top-p in (0, 1], got {temperature}, {top_p}")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = _read_done(path)
    # Batches are planned over *all* queries (same queries, batch size and seed: same batches and seeds),
    # so a resumed run generates exactly what an uninterrupted one would; finished batches are skipped.
    records = list(queries)
    if generator is None:
        prompts = {r.id: lm.renderer.prompt_for_messages(_query_messages(r)) for r in records}
        plan = length_sorted_batches([len(lm.encode(prompts[r.id])) for r in records], batch_size)
    else:  # the server batches for itself
        plan = [list(range(k, min(k + batch_size, len(records)))) for k in range(0, len(records), batch_size)]
    todo = [idx for idx in plan if any(records[i].id not in done for i in idx)]
    n_todo = sum(1 for idx in todo for i in idx if records[i].id not in done)
    bar = progress_bar(n_todo, "delia cache", progress, unit="query")
    try:
        for idx in todo:
            batch = [records[i] for i in idx]
            if generator is None:
                batch_seed = seed + int(stable_hash([r.id for r in batch], 8), 16) % (2 ** 31)
                answers = lm.generate([prompts[r.id] for r in batch], max_new_tokens=max_new_tokens,
                                      temperature=temperature, top_p=top_p, seed=batch_seed)
            else:  # per-query seeds: a query already written needs no request
                batch = [r for r in batch if r.id not in done]
                answers = generator.answer([_query_messages(r) for r in batch], max_new_tokens=max_new_tokens,
                                           temperature=temperature, top_p=top_p,
                                           seeds=[seed + int(stable_hash(r.id, 8), 16) % (2 ** 31) for r in batch])
            lines = []
            for r, a in zip(batch, answers):
                if r.id in done:
                    continue
                line = json.dumps({"id": r.id, "messages": _query_messages(r) + [{"role": "assistant", "content": a}]},
                                  ensure_ascii=False)
                done[r.id] = line
                lines.append(line)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write("".join(l + "\n" for l in lines))
                fh.flush()
                os.fsync(fh.fileno())
            bar.update(len(lines))
    finally:
        bar.close()
    ordered = [done[r.id] for r in queries if r.id in done]
    atomic_write_text(path, "".join(l + "\n" for l in ordered))
    empty = sum(1 for l in ordered if not json.loads(l)["messages"][-1]["content"].strip())
    return {"written": len(ordered), "generated": n_todo, "resumed": len(ordered) - n_todo, "empty": empty,
            "path": str(path)}


# ----------------------------------------------------------------------------------------------- mix
def n_mixed(n_source: int, diverse_ratio: float) -> int:
    """int(n_source x diverse_ratio), robust to float error (0.29 x 100 is 29, not 28)."""
    return int(n_source * diverse_ratio + 1e-9)


def mix_cache(source: Dataset, cache: Dataset, diverse_ratio: float, seed: int = 0) -> tuple[Dataset, dict[str, Any]]:
    """The downstream data plus int(len(source) x diverse_ratio) cache samples, shuffled (seeded)."""
    if diverse_ratio < 0:
        raise ConfigError(f"delia: diverse ratio must be >= 0, got {diverse_ratio}")
    usable = [r for r in cache if r.output.strip()]
    want = n_mixed(len(source), diverse_ratio)
    rng = random.Random(seed)
    picked = list(usable) if want >= len(usable) else [usable[i] for i in sorted(rng.sample(range(len(usable)), want))]
    taken = set(source.ids)
    extra = []
    for r in picked:
        rid = CACHE_PREFIX + r.id
        if rid in taken:
            raise DataError(f"id '{rid}' is in both the data and the cache", path=cache.path, field="id")
        extra.append(Record(id=rid, instruction=r.instruction, input=r.input, output=r.output, messages=r.messages,
                            source="delia-cache", task=r.task, meta=dict(r.meta)))
    mixed = list(source) + extra
    rng.shuffle(mixed)
    info = {"cache": cache.path, "cache_fingerprint": cache.fingerprint(), "cache_size": len(cache),
            "cache_empty_answers": len(cache) - len(usable), "requested": want, "mixed_in": len(extra),
            "diverse_ratio": diverse_ratio, "source_size": len(source), "id_prefix": CACHE_PREFIX,
            "cache_ids": [r.id for r in picked]}
    return Dataset(mixed, format=source.format, path=source.path), info


# ----------------------------------------------------------------------------------------- token loss
def token_losses(lm, records: Sequence[Record], token_ids: dict[str, int], *, max_length: int,
                 batch_size: int = 8) -> dict[str, dict[str, Any]]:
    """Mean loss (-log p) of each chosen token where it occurs in the responses, and how often it occurs."""
    from .collate import encode_records

    rows = encode_records(lm.tokenizer, lm.renderer, records, max_length)
    pairs = []
    for row in rows:
        n_prompt = row["completion_mask"].index(1)
        pairs.append(Pair(row["input_ids"][:n_prompt], row["input_ids"][n_prompt:]))
    sums = {t: 0.0 for t in token_ids}
    counts = {t: 0 for t in token_ids}
    model = lm.model
    was_training = model.training
    model.eval()
    try:
        for idx in length_sorted_batches([len(p) for p in pairs], batch_size):
            for i, lp in zip(idx, lm.response_logprobs([pairs[i] for i in idx])):
                resp = np.asarray(pairs[i].response)
                for t, tid in token_ids.items():
                    hit = resp == tid
                    sums[t] += float(-lp[hit].sum())
                    counts[t] += int(hit.sum())
    finally:
        model.train(was_training)
    return {t: {"id": token_ids[t], "count": counts[t], "mean_loss": sums[t] / counts[t] if counts[t] else None}
            for t in token_ids}


def token_loss_callback(lm, records: Sequence[Record], token_ids: dict[str, int], out_dir: str | os.PathLike,
                        *, max_length: int, batch_size: int = 8, split: str = "train"):
    """Reports :func:`token_losses` before and after training (``token_loss.json`` and the trainer log)."""
    from transformers import TrainerCallback

    path = Path(out_dir) / TOKEN_LOSS_FILE

    class TokenLoss(TrainerCallback):
        def __init__(self):
            self.report: dict[str, Any] = {"split": split, "n_records": len(records)}

        def _measure(self, when: str) -> None:
            res = token_losses(lm, records, token_ids, max_length=max_length, batch_size=batch_size)
            self.report[when] = res
            atomic_write_json(path, self.report)
            parts = [f"{t}: {v['mean_loss']:.4f} over {v['count']} tokens" if v["count"] else f"{t}: not in the data"
                     for t, v in res.items()]
            print(f"token loss ({split}, {when} training): " + "; ".join(parts), file=sys.stderr)

        def on_train_begin(self, args, state, control, **kwargs):
            self._measure("before")

        def on_train_end(self, args, state, control, **kwargs):
            self._measure("after")
            for t, v in self.report["after"].items():
                if v["mean_loss"] is not None:
                    state.log_history.append({"step": state.global_step, f"token_loss/{t}": v["mean_loss"]})

    return TokenLoss()
