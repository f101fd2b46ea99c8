"""Contamination check: did the model see an evaluation item during training (or in its ICL examples)?

Two tests between every evaluation item and the training data, on lower-cased word tokens
(``\\w+``, so punctuation and spacing differences do not hide a copy):

- **exact n-gram overlap** (GPT-3 / lm-eval decontamination): the item's text (prompt + reference)
  and a training sample's text (prompt + output) share a word n-gram (n = 13 by default). An item
  (prompt + reference), or its prompt alone, shorter than n words counts when its whole word
  sequence occurs in a training text, so a short question copied whole (an ARC question inside a
  differently formatted training sample) is still found.
- **near duplicates** (MinHash, datasketch): the item's prompt and a training sample's prompt have an
  estimated Jaccard similarity of their word-shingle sets (3-word shingles) of at least the threshold
  (0.8 by default). MinHash-LSH proposes candidates; each is confirmed with the exact Jaccard, so the
  report holds no false positives from hashing.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..data.record import Dataset, Record
from ..errors import ConfigError, MissingDependencyError

_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    if not tokens:
        return set()
    if len(tokens) < n:
        return {tuple(tokens)}
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def shingles(text: str, size: int) -> set[str]:
    toks = words(text)
    if len(toks) <= size:
        return {" ".join(toks)} if toks else set()
    return {" ".join(toks[i:i + size]) for i in range(len(toks) - size + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def eval_text(r: Record) -> str:
    return f"{r.prompt}\n{r.output}" if r.output else r.prompt


@dataclass
class ContaminationReport:
    """Hits per evaluation item id: ``[{"train_id", "kind": "ngram"|"near", ...}]``."""

    n_eval: int
    n_train: int
    params: dict[str, Any]
    hits: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def contaminated(self) -> set[str]:
        return set(self.hits)

    def as_dict(self) -> dict[str, Any]:
        kinds = {"ngram": 0, "near": 0}
        for hs in self.hits.values():
            for k in {h["kind"] for h in hs}:
                kinds[k] += 1
        return {"checked": True, "n_eval": self.n_eval, "n_train": self.n_train, "params": self.params,
                "n_contaminated": len(self.hits), "by_kind": kinds, "hits": self.hits}


def check_contamination(eval_items: Dataset | Sequence[Record], train: Dataset | Sequence[Record], *, n: int = 13,
                        threshold: float = 0.8, shingle: int = 3, num_perm: int = 128, seed: int = 1,
                        max_hits: int = 5) -> ContaminationReport:
    """Exact n-gram and MinHash near-duplicate overlap between ``eval_items`` and ``train``."""
    if n < 1:
        raise ConfigError(f"contamination: n-gram size must be >= 1, got {n}")
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"contamination: Jaccard threshold must be in (0, 1], got {threshold}")
    try:
        from datasketch import MinHash, MinHashLSH
    except ImportError:
        raise MissingDependencyError("datasketch", "eval", "the near-duplicate contamination check") from None
    params = {"ngram": n, "jaccard_threshold": threshold, "shingle": shingle, "num_perm": num_perm}
    report = ContaminationReport(len(eval_items), len(train), params)

    # exact n-grams: index every training n-gram -> first training id holding it; an item shorter
    # than n words is looked up whole as a word sequence inside the training texts
    index: dict[tuple[str, ...], str] = {}
    joined, starts, train_ids = [], [], []
    offset = 0
    for r in train:
        toks = words(f"{r.prompt}\n{r.output}")
        for g in ngrams(toks, n):
            index.setdefault(g, r.id)
        text = " " + " ".join(toks) + " \n"
        joined.append(text)
        starts.append(offset)
        train_ids.append(r.id)
        offset += len(text)
    corpus = "".join(joined)
    for item in eval_items:
        found: dict[str, int] = {}
        toks = words(eval_text(item))
        prompt_toks = words(item.prompt)
        short = [t for t in (toks, prompt_toks) if 0 < len(t) < n]
        for seq in dict.fromkeys(" ".join(t) for t in short):
            phrase, pos = f" {seq} ", 0
            while (pos := corpus.find(phrase, pos)) >= 0:
                tid = train_ids[bisect.bisect_right(starts, pos) - 1]
                found[tid] = found.get(tid, 0) + 1
                pos += 1
        for g in (ngrams(toks, n) if len(toks) >= n else ()):
            tid = index.get(g)
            if tid is not None:
                found[tid] = found.get(tid, 0) + 1
        for tid, count in sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))[:max_hits]:
            report.hits.setdefault(item.id, []).append({"train_id": tid, "kind": "ngram", "shared_ngrams": count})

    # near duplicates of the prompt: LSH candidates, confirmed by the exact Jaccard
    # the permutations are drawn once and shared: building them is most of a MinHash's cost
    template = MinHash(num_perm=num_perm, seed=seed)
    shared = {"num_perm": num_perm, "seed": seed, "permutations": template.permutations}
    if getattr(template, "scheme", None) is not None:  # datasketch >= 2 asks for it with shared permutations
        shared["scheme"] = template.scheme

    def minhash(sh: set[str]):
        m = MinHash(**shared)
        m.update_batch([s.encode("utf-8") for s in sh])
        return m

    train_sh = {}
    # candidates from LSH at a lower threshold (better recall; datasketch needs >= 2 bands), then exact Jaccard
    lsh = MinHashLSH(threshold=max(0.1, min(0.9, threshold - 0.1)), num_perm=num_perm)
    for r in train:
        sh = shingles(r.prompt, shingle)
        if sh and r.id not in train_sh:
            train_sh[r.id] = sh
            lsh.insert(r.id, minhash(sh))
    for item in eval_items:
        sh = shingles(item.prompt, shingle)
        if not sh:
            continue
        near = []
        for tid in lsh.query(minhash(sh)):
            j = jaccard(sh, train_sh[tid])
            if j >= threshold:
                near.append((j, tid))
        for j, tid in sorted(near, key=lambda t: (-t[0], t[1]))[:max_hits]:
            report.hits.setdefault(item.id, []).append({"train_id": tid, "kind": "near", "jaccard": round(j, 4)})
    return report


def training_data_from_adapter(adapter_dir: str) -> Dataset | None:
    """The records a datawinnow adapter was trained on, from its ``data_manifest.json``.

    The manifest names the training ``source`` and the ``ids`` seen, and, under ``mixed_in``, any
    other source mixed into training (DELIA's cache: its path, the ids drawn from it and the prefix
    they carried in training). None when the folder has no manifest (an adapter trained elsewhere).
    Raises ConfigError when a source cannot be read back or no longer holds an id the manifest lists
    (then pass ``--train SRC``): a training sample is never dropped from the check silently.
    """
    path = Path(adapter_dir) / "data_manifest.json"
    if not path.exists():
        return None
    try:
        man = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not man.get("source"):
        raise ConfigError(f"{path} does not name its training source; pass --train SRC for the contamination check")
    mixed = man.get("mixed_in") or []
    prefixes = tuple(m.get("id_prefix", "") for m in mixed if m.get("id_prefix"))
    main_ids = man.get("ids")
    if main_ids is not None:
        main_ids = [i for i in main_ids if not (prefixes and i.startswith(prefixes))]
    records = list(_manifest_source(path, man["source"], main_ids))
    for m in mixed:
        prefix = m.get("id_prefix", "")
        for r in _manifest_source(path, m.get("source"), m.get("ids")):
            records.append(Record(id=prefix + r.id, instruction=r.instruction, input=r.input, output=r.output,
                                  messages=r.messages, source=r.source, task=r.task, meta=r.meta))
    if not mixed:
        return Dataset(records, path=man["source"])
    return Dataset(records, path="+".join([str(man["source"])] + [str(m.get("source")) for m in mixed]))


def _manifest_source(manifest: Path, source: Any, ids: list[str] | None) -> Dataset:
    """``source`` read back, restricted to ``ids`` (all of them must be there)."""
    from ..data import load

    if not source:
        raise ConfigError(f"{manifest} lists training samples without naming their source; pass --train SRC "
                          "for the contamination check")
    try:
        ds = load(source)
    except Exception as e:  # noqa: BLE001 - any failure to read it back means the user must name it
        raise ConfigError(f"cannot read the training data {source!r} named in {manifest} ({e}); "
                          "pass --train SRC for the contamination check") from None
    if ids is None:
        return ds
    known = set(ds.ids)
    missing = [i for i in ids if i not in known]
    if missing:
        raise ConfigError(f"the training data {source!r} named in {manifest} no longer holds {len(missing)} of the "
                          f"ids it lists (first: {missing[0]!r}); pass --train SRC for the contamination check")
    return ds.subset(ids)


def combine(datasets: Iterable[Dataset]) -> Dataset:
    """Several training sources as one pool (ids prefixed when two sources share an id)."""
    records: list[Record] = []
    seen: set[str] = set()
    for k, ds in enumerate(datasets):
        for r in ds:
            rid = r.id if r.id not in seen else f"{k}:{r.id}"
            seen.add(rid)
            records.append(Record(id=rid, instruction=r.instruction, input=r.input, output=r.output,
                                  messages=r.messages, source=r.source, task=r.task, meta=r.meta))
    return Dataset(records, path="+".join(str(d.path) for d in datasets))
