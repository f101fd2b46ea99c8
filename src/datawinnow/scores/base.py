"""The scorer interface, the score table, and the cached, resumable, progress-reporting batch runner."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Sequence

import numpy as np

from ..cache import ScoreStore, atomic_write_text
from ..data.record import Dataset, Record

log = logging.getLogger(__name__)


@dataclass
class ScoreTable:
    """One score per record (float64 for ranking; never stored narrower than float32), plus named parts."""

    ids: list[str]
    score: np.ndarray
    parts: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # e.g. timings, cache hits

    def __post_init__(self):
        self.score = np.asarray(self.score, dtype=np.float64)
        if len(self.score) != len(self.ids):
            raise ValueError("one score per id is required")

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.ids, self.score.tolist()))

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for k, rid in enumerate(self.ids):
            row: dict[str, Any] = {"id": rid, "score": _num(self.score[k])}
            for name, values in self.parts.items():
                row[name] = _num(values[k])
            out.append(row)
        return out

    def write_jsonl(self, path: str) -> None:
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.rows()))


def _num(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        return None if np.isnan(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


class _Setting:
    """A :class:`Context` setting that notes when it is read: a run's manifest records the settings
    its scorers and methods consulted (a seed that nothing read cannot change a pick)."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, ctx, owner=None):
        if ctx is None:
            return self
        ctx._read.add(self.name)
        return ctx._settings[self.name]

    def __set__(self, ctx, value) -> None:
        ctx._settings[self.name] = value


class Context:
    """What a scorer or method may need, loaded lazily so that cheap methods load no model.

    ``model``/``embedder`` are names (None: the embedded defaults) or loaded backends. Unknown
    options are an error. Reads of the settings that can change a score or a pick (device, dtype,
    system, max_length, batch_size, batch_tokens, seed, sources) and uses of the model, embedder and judge are
    noted; :meth:`recording` and :meth:`used_settings` turn them into the manifest's ``settings``.

    Batches: ``batch_tokens`` (a number, or 'auto': from free memory on CUDA, 16,384 on a CPU) forms
    model batches by a token budget over length-sorted work; None (the default here; the CLI's default
    is 'auto') keeps fixed batches of ``batch_size`` sequences. :meth:`batches` applies the rule.
    """

    device = _Setting()
    dtype = _Setting()
    system = _Setting()
    max_length = _Setting()
    batch_size = _Setting()
    batch_tokens = _Setting()
    seed = _Setting()
    sources = _Setting()

    def __init__(self, *, model: Any = None, embedder: Any = None, device: str = "auto", dtype: str = "auto",
                 system: str | None = None, max_length: int = 512, batch_size: int = 8,
                 batch_tokens: int | str | None = None, use_cache: bool = True, progress: bool = True, seed: int = 0, sources: dict[str, Dataset] | None = None, judge: Any = None,
                 **unknown: Any):
        if unknown:
            from ..options import check_options, keyword_names

            check_options("Context()", unknown, keyword_names(Context.__init__))
        self._read: set[str] = set()
        self._settings: dict[str, Any] = {}
        self._model, self._embedder = model, embedder
        self._judge = judge  # a Judge, or a spec for backends.judge.load_judge (None: local, with this model)
        self.device, self.dtype, self.system, self.max_length = device, dtype, system, max_length
        self.batch_size, self.use_cache, self.progress, self.seed = batch_size, use_cache, progress, seed
        from ..backends.batching import parse_batch_tokens

        self.batch_tokens = parse_batch_tokens(batch_tokens)
        self.sources = sources or {}

    @contextlib.contextmanager
    def recording(self):
        """Collects, in the set it yields, what is read inside the block (nested blocks add to outer ones)."""
        outer, self._read = self._read, set()
        try:
            yield self._read
        finally:
            outer |= self._read
            self._read = outer

    def used_settings(self, used: set[str]) -> dict[str, Any]:
        """The settings named in ``used`` (from :meth:`recording`) as the manifest records them: resolved
        device type and dtype, the system-prompt policy, and the identity of each backend used."""
        from ..backends.device import dtype_name, pick_device, pick_dtype

        out: dict[str, Any] = {}
        for name in ("seed", "batch_size", "batch_tokens", "max_length"):
            if name in used and not (name == "batch_tokens" and self._settings[name] is None):
                out[name] = self._settings[name]
        if "system" in used:
            out["system"] = system_policy(self._settings["system"])
        if "device" in used or "dtype" in used:
            dev = pick_device(self._settings["device"])
            out["device"] = device_description(dev)
            if "dtype" in used:
                out["dtype"] = dtype_name(pick_dtype(self._settings["dtype"], dev))
        if "sources" in used and self._settings["sources"]:
            out["sources"] = {k: {"source": ds.path, "fingerprint": ds.fingerprint(), "n": len(ds)}
                              for k, ds in sorted(self._settings["sources"].items())}
        if "model" in used and self.model_loaded:
            lm = self._model
            out["model"] = {"identity": lm.identity, "device": device_description(lm.device),
                            "dtype": dtype_name(lm.dtype), "max_length": lm.max_length,
                            "system": system_policy(lm.renderer.system), **library_versions("torch", "transformers")}
        if "embedder" in used and self._embedder is not None and not isinstance(self._embedder, str):
            inner = getattr(self._embedder, "model", None)
            dev = getattr(inner, "device", None)
            out["embedder"] = {"identity": self._embedder.identity,
                               **({"device": device_description(dev)} if dev is not None else {}),
                               **(library_versions("torch", "sentence_transformers") if inner is not None else {})}
        if "judge" in used and self._judge is not None and not isinstance(self._judge, (str, dict)):
            out["judge"] = {"identity": getattr(self._judge, "identity", type(self._judge).__name__)}
        return out

    @property
    def model(self):
        from ..backends.causal_lm import CausalLM

        self._read.add("model")
        if not isinstance(self._model, CausalLM):
            self._model = CausalLM.load(self._model, device=self.device, dtype=self.dtype, system=self.system,
                                        max_length=self.max_length)
        return self._model

    @property
    def model_loaded(self) -> bool:
        from ..backends.causal_lm import CausalLM

        return isinstance(self._model, CausalLM)

    @property
    def embedder(self):
        from ..backends.embedder import Embedder

        self._read.add("embedder")
        if not isinstance(self._embedder, Embedder):
            self._embedder = Embedder.load(self._embedder, device=self.device)
        return self._embedder

    @property
    def judge(self):
        """The judge (loaded on first use); a local judge without its own model judges with :attr:`model`."""
        from ..backends.judge import Judge, load_judge

        self._read.add("judge")
        if not isinstance(self._judge, Judge):
            spec = dict(self._judge) if isinstance(self._judge, dict) else {"kind": self._judge}
            if spec.get("kind") in (None, "local") and spec.get("model") is None and not spec.get("base_url"):
                spec["model"] = self.model
            if spec.get("kind") in (None, "local"):
                spec.setdefault("batch_size", self.batch_size)
                spec.setdefault("batch_tokens", self.batch_tokens)
            self._judge = load_judge(spec)
        return self._judge

    def batches(self, lengths: Sequence[int], *, per_item: int = 1, lm=None) -> list[list[int]]:
        """Model batches over work of these token ``lengths`` (length-sorted, longest first): by the token
        budget (``batch_tokens``, resolved by the model) when set, else ``batch_size // per_item`` items."""
        if self.batch_tokens is None:
            from ..backends.batching import fixed_batches

            return fixed_batches(lengths, max(1, self.batch_size // per_item))
        return (lm or self.model).plan(lengths, batch_tokens=self.batch_tokens)

    def model_identity(self) -> str | None:
        return self._model.identity if self.model_loaded else None


def system_policy(system: str | None) -> str:
    """The system-prompt policy as ``--system`` spells it: default, none, or the text."""
    return "default" if system is None else ("none" if system == "" else system)


def library_versions(*names: str) -> dict[str, str]:
    """``{name: version}`` of the libraries whose kernels computed a score (a new release can move the last digits)."""
    import importlib

    return {name: getattr(importlib.import_module(name), "__version__", "unknown") for name in names}


def device_description(device: Any) -> str:
    """``cpu``, or ``cuda (NVIDIA H100 80GB HBM3)``: the device type, and the GPU model (its kernels differ)."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return dev.type


class Scorer:
    """A per-sample score. Subclasses set ``name``, ``description``, ``defaults`` and implement ``score``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    param_types: ClassVar[dict[str, str]] = {}  # where a default does not tell the type (params.py)
    higher_is_better: ClassVar[bool] = True

    def __init__(self, **params: Any):
        from ..params import check_params  # unknown names and values of the wrong type: one ConfigError

        self.params = check_params(f"scorer '{self.name}'", self.defaults, params, self.param_types)

    def score(self, dataset: Dataset, ctx: Context) -> ScoreTable:
        raise NotImplementedError


def progress_bar(total: int, desc: str, enabled: bool = True, unit: str = "sample"):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True, file=sys.stderr,
                smoothing=0.1)


def run_cached(
    dataset: Dataset,
    *,
    scorer: str,
    params: dict[str, Any],
    identity: str | None,
    compute: Callable[[list[Record]], list[dict[str, Any]]],
    plan: Callable[[list[Record]], Iterable[list[int]]],
    ctx: Context,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows for every record: cached ones read back, the rest computed batch by batch and stored.

    ``plan(todo)`` yields batches as index lists into ``todo`` (e.g. length-sorted); ``compute(batch)``
    returns one row per record (a dict of JSON numbers). Each finished batch is stored atomically
    before the next starts, so an interrupted run loses only the batch in flight. A progress bar
    shows rate and ETA; the last line reports samples/s.
    """
    store = ScoreStore(scorer, params, identity) if ctx.use_cache else None
    rows: dict[str, dict[str, Any]] = {}
    todo: list[Record] = []
    for r in dataset:
        hit = store.lookup(r.id, r.content_key()) if store is not None else None
        if hit is not None:
            rows[r.id] = hit
        else:
            todo.append(r)
    t0 = time.perf_counter()
    if todo:
        bar = progress_bar(len(todo), f"{scorer}", ctx.progress)
        try:
            for idx in plan(todo):
                batch = [todo[i] for i in idx]
                out = compute(batch)
                stamped = [{**row, "id": r.id, "_key": r.content_key()} for r, row in zip(batch, out)]
                if store is not None:
                    store.put(stamped)
                for row in stamped:
                    rows[row["id"]] = row
                bar.update(len(batch))
        finally:
            bar.close()
        if store is not None:
            store.compact()
    return [rows[r.id] for r in dataset], run_summary(scorer, len(dataset), len(todo), t0)


def run_summary(scorer: str, n_total: int, n_computed: int, t0: float, *, extra: dict[str, Any] | None = None,
                detail: str = "") -> dict[str, Any]:
    """A cached run's info dict (computed, cached, ``extra``, seconds, rate), logged when anything was computed;
    ``detail`` goes inside the log line's parentheses."""
    seconds = time.perf_counter() - t0
    info = {"computed": n_computed, "cached": n_total - n_computed, **(extra or {}), "seconds": round(seconds, 3),
            "samples_per_s": round(n_computed / seconds, 3) if n_computed and seconds > 0 else None}
    if n_computed:
        log.info(f"{scorer}: scored {n_computed} samples in {seconds:.1f} s ({n_computed / seconds:.2f} samples/s"
                 f"{detail}); {info['cached']} from cache")
    return info


def sequential_plan(batch_size: int) -> Callable[[list[Record]], Iterable[list[int]]]:
    def plan(todo: Sequence[Record]) -> Iterable[list[int]]:
        return [list(range(k, min(k + batch_size, len(todo)))) for k in range(0, len(todo), batch_size)]

    return plan
