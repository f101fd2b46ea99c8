"""The lazily loaded resources of a run (model, embedder, judge) and the settings scorers and methods read.

:class:`Context` is built from :class:`~.options.RuntimeOptions` (or the same names as keywords);
cheap methods load no model. Reads of the settings that can change a score or a pick are noted, so
a run's manifest records what its scorers and methods consulted.
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

from ..data.record import Dataset
from .describe import device_description, library_versions, system_policy
from .options import RuntimeOptions


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


# the options whose reads are noted (they can change a score or a pick); the rest are plain attributes
_NOTED = ("device", "dtype", "system", "max_length", "batch_size", "batch_tokens", "seed")


class Context:
    """What a scorer or method may need, loaded lazily so that cheap methods load no model.

    ``model``/``embedder``/``judge`` are names or specs (None: the embedded defaults, the local judge)
    or loaded backends. The other keywords are the fields of :class:`RuntimeOptions`; unknown ones are
    an error. ``sources``: extra datasets (``target``, ``existing``). :attr:`options` gives the
    settings back as :class:`RuntimeOptions` (what another process needs to rebuild this context).

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

    def __init__(self, *, model: Any = None, embedder: Any = None, judge: Any = None,
                 sources: dict[str, Dataset] | None = None, **options: Any):
        if options:
            from ..options import check_options

            check_options("Context()", options, cls_option_names())
        opts = RuntimeOptions(model=model if isinstance(model, str) or model is None else _source_of(model),
                              embedder=embedder if isinstance(embedder, str) or embedder is None else None,
                              judge=judge if isinstance(judge, (str, dict)) or judge is None else None, **options)
        self._read: set[str] = set()
        self._settings: dict[str, Any] = {}
        self._model, self._embedder = model, embedder
        self._judge = judge  # a Judge, or a spec for backends.judge.load_judge (None: local, with this model)
        self._opts = opts
        # resources handed over as objects that the options cannot name (another process cannot rebuild them)
        self._unnamed = {name for name, obj in (("model", model), ("embedder", embedder), ("judge", judge))
                         if obj is not None and not isinstance(obj, (str, dict))
                         and not (name == "model" and _source_of(obj) is not None)}
        for name in _NOTED:
            setattr(self, name, getattr(opts, name))
        self.sources = sources or {}
        self.use_cache, self.progress = opts.use_cache, opts.progress

    @staticmethod
    def option_names() -> list[str]:
        """Every keyword :class:`Context` takes: the :class:`RuntimeOptions` fields and ``sources``."""
        return cls_option_names()

    @classmethod
    def from_options(cls, options: RuntimeOptions, *, sources: dict[str, Dataset] | None = None,
                     **loaded: Any) -> "Context":
        """A context for these options; ``loaded`` may hand over an already loaded ``model``/``embedder``/``judge``."""
        fields = {name: getattr(options, name) for name in RuntimeOptions.names()}
        for name in ("model", "embedder", "judge"):
            if loaded.get(name) is not None:
                fields[name] = loaded[name]
        return cls(sources=sources, **fields)

    @property
    def options(self) -> RuntimeOptions:
        """The current settings (a setting changed on the context shows here; reading does not count as a use)."""
        s = self._settings
        return self._opts.replace(device=s["device"], dtype=s["dtype"], system=s["system"],
                                  max_length=s["max_length"], batch_size=s["batch_size"],
                                  batch_tokens=s["batch_tokens"], seed=s["seed"], use_cache=self.use_cache,
                                  progress=self.progress)

    def worker_options(self) -> RuntimeOptions | None:
        """The options another process (a Ray worker) rebuilds this context's resources from: :attr:`options`,
        with the dtype pinned to what it is here (a loaded model's; else ``auto`` resolved on this machine): a
        worker's hardware may resolve ``auto`` otherwise, and the dtype is part of a model's identity. None
        when a resource was handed over as an object the options cannot name (a model without a source, an
        embedder or judge object): such work stays in this process."""
        from ..backends.device import dtype_name, pick_device, pick_dtype

        if self._unnamed:
            return None
        opts = self.options
        if self.model_loaded:
            return opts.replace(dtype=dtype_name(self._model.dtype))
        return opts.replace(dtype=dtype_name(pick_dtype(opts.dtype, pick_device(opts.device))))

    def loaded_identities(self) -> dict[str, str]:
        """The identities of the resources loaded so far (``model``, ``embedder``, ``judge``): a worker that
        rebuilds them from :meth:`worker_options` checks that it loaded the same ones."""
        out = {}
        for name, obj in (("model", self._model), ("embedder", self._embedder), ("judge", self._judge)):
            if obj is not None and not isinstance(obj, (str, dict)) and getattr(obj, "identity", None):
                out[name] = obj.identity
        return out

    @property
    def cache_dir(self) -> str | None:
        return self._opts.cache_dir

    @property
    def executor(self):
        """The executor that runs pending batches (:mod:`.executor`): ``local`` or ``ray``."""
        from .executor import make_executor

        return make_executor(self._opts)

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


def cls_option_names() -> list[str]:
    return RuntimeOptions.names() + ["sources"]


def _source_of(model: Any) -> str | None:
    """The name a loaded model was loaded from (what another process loads again), when it has one."""
    return getattr(model, "source", None)
