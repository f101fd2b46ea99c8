"""The experiment config (YAML): read, merge ``tiny:`` overrides, validate every field before any work.

Every error is a :class:`ConfigError` whose message starts with the file and the key path
(``exp.yaml: methods[2].name: unknown method 'ifdd' (known: ...)``). Registry lookups (methods,
suites) happen here, at run time, so a config naming a method that is registered later validates
once that method exists. See docs/experiments.md for the reference of every field.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..train.config import TrainConfig

MODES = ("finetune", "icl")
EXECUTORS = ("local",)
FULL_CHOICES = ("auto", True, False)
POOL_METHOD = "pool"  # pseudo-method: the whole pool, for training modes that select while training (iterit)

# the primary metric of each suite: (summary key, per-item field, scale applied to the per-item value)
# per-item scores average to the summary value over the items that have one
PRIMARY_METRICS: dict[str, tuple[str, str, float]] = {
    "generation": ("rougeL", "rougeL", 1.0),
    "rubric": ("mean", "mean", 1.0),
    "winrate": ("win_rate", "win", 100.0),
    "ifeval": ("prompt_level_strict_acc", "prompt_strict", 1.0),
    "arc_easy": ("acc", "correct", 1.0),
    "arc_challenge": ("acc", "correct", 1.0),
    "mmlu": ("acc", "correct", 1.0),
    "hellaswag": ("acc_norm", "correct_norm", 1.0),
    "winogrande": ("acc", "correct", 1.0),
}
# multiple choice: no ICL examples applied
MODEL_ONLY_SUITES = ("arc_easy", "arc_challenge", "mmlu", "hellaswag", "winogrande")
REFERENCE_SUITES = ("generation", "rubric", "winrate")  # the suites that read a data source with references

TOP_KEYS = {"name", "description", "model", "embedder", "judge", "mode", "executor", "pool", "target", "existing",
            "base", "budgets", "random_seeds", "methods", "zero_shot", "full", "max_train_tokens", "train", "icl",
            "suites", "selection", "generation", "delia", "tiny"}
SOURCE_KEYS = {"source", "tasks", "exclude_tasks", "per_task", "slice", "limit"}
MODEL_KEYS = {"name", "device", "dtype", "system", "max_length", "batch_size"}
METHOD_KEYS = {"name", "label", "params", "seeds", "train"}
SUITE_KEYS = {"name", "label", "limit", "data", "max_new_tokens"}
ICL_KEYS = {"k", "max_tokens"}
SELECTION_KEYS = {"score_cache", "batch_size"}
GENERATION_KEYS = {"temperature", "top_p", "max_new_tokens"}
BASE_KEYS = {"train_on"}
DELIA_KEYS = {"queries", "max_new_tokens", "temperature", "top_p"}


@dataclass
class SourceSpec:
    """A data source and the records taken from it: tasks, a slice within each task, a slice overall."""

    source: str
    tasks: list[str] | None = None
    exclude_tasks: list[str] | None = None
    per_task: tuple[int, int] | None = None
    slice: tuple[int, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "tasks": self.tasks, "exclude_tasks": self.exclude_tasks,
                "per_task": list(self.per_task) if self.per_task else None,
                "slice": list(self.slice) if self.slice else None}


@dataclass
class ModelSpec:
    name: str = "smollm2"
    device: str = "auto"
    dtype: str = "auto"
    system: str | None = None
    max_length: int = 512
    batch_size: int = 8


@dataclass
class MethodSpec:
    name: str
    label: str
    params: dict[str, Any]
    seeds: list[int]
    train: dict[str, Any] = field(default_factory=dict)


@dataclass
class SuiteSpec:
    name: str
    label: str
    limit: int | None = None
    data: SourceSpec | None = None
    max_new_tokens: int | None = None


@dataclass
class ExperimentConfig:
    """The validated, normalised config; :meth:`as_dict` is what results.json records."""

    path: str
    name: str
    model: ModelSpec
    embedder: str | None
    judge: Any
    mode: str
    executor: str
    pool: SourceSpec
    target: SourceSpec | None
    existing: SourceSpec | None
    base_train_on: str | None
    budgets: list[float]
    random_seeds: list[int]
    methods: list[MethodSpec]
    zero_shot: bool
    full: Any
    max_train_tokens: int | None
    train: dict[str, Any]
    icl: dict[str, int]
    suites: list[SuiteSpec]
    selection: dict[str, Any]
    generation: dict[str, Any]
    delia: dict[str, Any] | None = None
    tiny: bool = False

    def as_dict(self) -> dict[str, Any]:
        def src(s: SourceSpec | None):
            return s.as_dict() if s else None

        return {
            "name": self.name, "model": vars(self.model).copy(), "embedder": self.embedder, "judge": self.judge,
            "mode": self.mode, "executor": self.executor, "pool": src(self.pool), "target": src(self.target),
            "existing": src(self.existing), "base": {"train_on": self.base_train_on} if self.base_train_on else None,
            "budgets": self.budgets, "random_seeds": self.random_seeds,
            "methods": [{"name": m.name, "label": m.label, "params": m.params, "seeds": m.seeds, "train": m.train}
                        for m in self.methods],
            "zero_shot": self.zero_shot, "full": self.full, "max_train_tokens": self.max_train_tokens,
            "train": self.train, "icl": self.icl,
            "suites": [{"name": s.name, "label": s.label, "limit": s.limit, "data": src(s.data),
                        "max_new_tokens": s.max_new_tokens} for s in self.suites],
            "selection": self.selection, "generation": self.generation,
            "delia": {**self.delia, "queries": self.delia["queries"].as_dict()} if self.delia else None,
            "tiny": self.tiny,
        }


# ------------------------------------------------------------------------------------------ reading
def read_config(path: str, *, tiny: bool = False) -> ExperimentConfig:
    """Read and validate ``path``; with ``tiny`` the ``tiny:`` section is merged over the rest first."""
    try:
        import yaml
    except ImportError:  # pragma: no cover - a core dependency
        from ..errors import MissingDependencyError
        raise MissingDependencyError("pyyaml", "all", "datawinnow run-experiment") from None
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise ConfigError(f"{name}: config file not found")
    try:
        with open(name, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"{name}: {where}not valid YAML ({getattr(e, 'problem', None) or e})") from None
    return validate(raw, path=name, tiny=tiny)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``: dicts recursively, everything else (lists too) replaced."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class _Checker:
    def __init__(self, path: str):
        self.path = path

    def fail(self, key: str, msg: str) -> None:
        raise ConfigError(f"{self.path}: {key}: {msg}" if key else f"{self.path}: {msg}")

    def keys(self, obj: Any, allowed: set[str], key: str) -> dict[str, Any]:
        if not isinstance(obj, dict):
            self.fail(key, f"expected a mapping, got {type(obj).__name__}")
        unknown = sorted(set(obj) - allowed)
        if unknown:
            where = f"{key}.{unknown[0]}" if key else unknown[0]
            self.fail(where, f"unknown key (known: {', '.join(sorted(allowed))})")
        return obj

    def int_(self, v: Any, key: str, lo: int | None = None) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(key, f"expected an integer, got {v!r}")
        if lo is not None and v < lo:
            self.fail(key, f"must be >= {lo}, got {v}")
        return v

    def str_(self, v: Any, key: str) -> str:
        if not isinstance(v, str) or not v.strip():
            self.fail(key, f"expected a non-empty string, got {v!r}")
        return v

    def range_(self, v: Any, key: str) -> tuple[int, int]:
        if not (isinstance(v, list) and len(v) == 2):
            self.fail(key, f"expected [start, stop], got {v!r}")
        a, b = (self.int_(x, f"{key}[{i}]", 0) for i, x in enumerate(v))
        if b <= a:
            self.fail(key, f"stop must be greater than start, got [{a}, {b}]")
        return a, b


def validate(raw: Any, *, path: str = "<config>", tiny: bool = False) -> ExperimentConfig:
    """Check every field of a parsed config and return it normalised (see the module docstring)."""
    from ..registry import METHODS, SUITES

    c = _Checker(path)
    if raw is None:
        c.fail("", "the config is empty")
    c.keys(raw, TOP_KEYS, "")
    if tiny:
        if "tiny" not in raw:
            c.fail("tiny", "--tiny needs a 'tiny:' section with the small-size overrides")
        over = c.keys(raw["tiny"], TOP_KEYS - {"tiny"}, "tiny")
        raw = deep_merge({k: v for k, v in raw.items() if k != "tiny"}, over)
    elif "tiny" in raw:
        c.keys(raw["tiny"], TOP_KEYS - {"tiny"}, "tiny")

    name = raw.get("name") or os.path.splitext(os.path.basename(path))[0]

    # model
    m = raw.get("model", "smollm2")
    if isinstance(m, str):
        m = {"name": m}
    c.keys(m, MODEL_KEYS, "model")
    model = ModelSpec(**{**vars(ModelSpec()), **m})
    c.str_(model.name, "model.name")
    if model.dtype not in ("auto", "fp32", "bf16", "fp16"):
        c.fail("model.dtype", f"must be auto, fp32, bf16 or fp16, got {model.dtype!r}")
    c.int_(model.max_length, "model.max_length", 16)
    c.int_(model.batch_size, "model.batch_size", 1)

    mode = raw.get("mode", "finetune")
    if mode not in MODES:
        c.fail("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
    executor = raw.get("executor", "local")
    if executor not in EXECUTORS:
        c.fail("executor", f"unknown executor {executor!r} (known: {', '.join(EXECUTORS)})")

    if "pool" not in raw:
        c.fail("pool", "missing: the data source to select from (pool: {source: ...})")
    pool = _source(c, raw["pool"], "pool")
    target = _source(c, raw["target"], "target") if raw.get("target") is not None else None
    existing = _source(c, raw["existing"], "existing") if raw.get("existing") is not None else None
    base_train_on = None
    if raw.get("base") is not None:
        b = c.keys(raw["base"], BASE_KEYS, "base")
        base_train_on = b.get("train_on")
        if base_train_on != "existing":
            c.fail("base.train_on", f"must be 'existing' (tune the base model on the existing data first), "
                                    f"got {base_train_on!r}")
        if existing is None:
            c.fail("base.train_on", "needs an 'existing:' source")

    # budgets
    budgets = raw.get("budgets")
    if not isinstance(budgets, list) or not budgets:
        c.fail("budgets", "expected a non-empty list of fractions of the pool in (0, 1)")
    norm_budgets = []
    for i, b in enumerate(budgets):
        key = f"budgets[{i}]"
        if isinstance(b, str) and b.strip().endswith("%"):
            try:
                b = float(b.strip()[:-1]) / 100.0
            except ValueError:
                c.fail(key, f"not a percentage: {budgets[i]!r}")
        if isinstance(b, bool) or not isinstance(b, (int, float)):
            c.fail(key, f"expected a fraction in (0, 1) or a percentage, got {budgets[i]!r}")
        if not 0.0 < float(b) < 1.0:
            c.fail(key, f"budget {budgets[i]!r} is out of range: a fraction of the pool in (0, 1) "
                        f"(the full pool is its own cell: full: auto)")
        norm_budgets.append(float(b))
    if len(set(norm_budgets)) != len(norm_budgets):
        c.fail("budgets", f"repeated budget in {budgets}")

    random_seeds = _seeds(c, raw.get("random_seeds", 3), "random_seeds")
    if len(random_seeds) < 3:
        c.fail("random_seeds", f"random needs at least 3 seeds, got {len(random_seeds)}")

    delia = None
    if raw.get("delia") is not None:
        d = c.keys(raw["delia"], DELIA_KEYS, "delia")
        if "queries" not in d:
            c.fail("delia.queries", "missing: the broad queries the base model answers for the DELIA cache")
        delia = {"queries": _source(c, d["queries"], "delia.queries"),
                 "max_new_tokens": c.int_(d.get("max_new_tokens", 128), "delia.max_new_tokens", 1),
                 "temperature": float(d.get("temperature", 0.7)), "top_p": float(d.get("top_p", 0.95))}

    # train settings (finetune mode): TrainConfig fields, model/device/dtype come from model:
    train = raw.get("train") or {}
    _train_fields(c, train, "train", model, delia is not None)

    # methods
    methods_raw = raw.get("methods")
    if not isinstance(methods_raw, list) or not methods_raw:
        c.fail("methods", "expected a non-empty list of methods ({name: ifd, params: {...}})")
    known = METHODS.names()
    methods: list[MethodSpec] = []
    labels: set[str] = set()
    for i, entry in enumerate(methods_raw):
        key = f"methods[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        c.keys(entry, METHOD_KEYS, key)
        mname = entry.get("name")
        if not isinstance(mname, str):
            c.fail(f"{key}.name", "missing method name")
        params = entry.get("params") or {}
        if not isinstance(params, dict):
            c.fail(f"{key}.params", f"expected a mapping, got {params!r}")
        mtrain = entry.get("train") or {}
        _train_fields(c, mtrain, f"{key}.train", model, delia is not None)
        if mname == POOL_METHOD:
            if mode != "finetune" or {**train, **mtrain}.get("method") != "iterit":
                c.fail(f"{key}.name", f"'{POOL_METHOD}' (the whole pool, selected during training) needs "
                                      f"mode: finetune and train: {{method: iterit}}")
            if params:
                c.fail(f"{key}.params", f"'{POOL_METHOD}' takes no parameters")
            stochastic = False
        else:
            if mname not in known:
                c.fail(f"{key}.name", f"unknown method '{mname}' (known: {', '.join(known)})")
            cls = METHODS.get(mname)
            try:
                cls(**params)
            except ConfigError as e:
                c.fail(f"{key}.params", str(e))
            stochastic = _is_stochastic(cls, params)
        label = entry.get("label") or mname
        if label in labels or label in ("zero_shot", "full"):
            c.fail(f"{key}.label", f"'{label}' is used twice (give one of them a distinct label:)")
        labels.add(label)
        if mname == "random" and not mtrain and "seeds" not in entry and not params:
            seeds = random_seeds  # random is always run with the random seeds
        elif "seeds" in entry:
            seeds = _seeds(c, entry["seeds"], f"{key}.seeds")
            if not stochastic and seeds != [0] and mname != "random":
                c.fail(f"{key}.seeds", f"method '{mname}' is deterministic with these parameters: it runs once "
                                       f"(drop seeds:)")
        else:
            seeds = random_seeds if stochastic else [0]
        if mname == "random" and len(seeds) < 3:
            c.fail(f"{key}.seeds", f"random needs at least 3 seeds, got {len(seeds)}")
        if mname in ("delift-task", "delift-se-task", "less") and target is None:
            c.fail(f"{key}.name", f"method '{mname}' needs a 'target:' source")
        if mname in ("delift-continual", "delift-se-continual") and existing is None:
            c.fail(f"{key}.name", f"method '{mname}' needs an 'existing:' source")
        methods.append(MethodSpec(name=mname, label=label, params=dict(params), seeds=seeds, train=dict(mtrain)))

    zero_shot = raw.get("zero_shot", True)
    if not isinstance(zero_shot, bool):
        c.fail("zero_shot", f"expected true or false, got {zero_shot!r}")
    full = raw.get("full", "auto")
    if full not in FULL_CHOICES:
        c.fail("full", f"must be auto, true or false, got {full!r}")
    max_train_tokens = raw.get("max_train_tokens")
    if max_train_tokens is not None:
        c.int_(max_train_tokens, "max_train_tokens", 1)
    if full == "auto" and max_train_tokens is None:
        c.fail("max_train_tokens", "full: auto needs max_train_tokens (the compute cap the full-pool cell must fit)")

    icl = raw.get("icl") or {}
    c.keys(icl, ICL_KEYS, "icl")
    icl = {"k": c.int_(icl.get("k", 5), "icl.k", 1), "max_tokens": c.int_(icl.get("max_tokens", 1024), "icl.max_tokens", 16)}

    selection = raw.get("selection") or {}
    c.keys(selection, SELECTION_KEYS, "selection")
    score_cache = selection.get("score_cache", False)
    if not isinstance(score_cache, bool):
        c.fail("selection.score_cache", f"expected true or false, got {score_cache!r}")
    selection = {"score_cache": score_cache,
                 "batch_size": c.int_(selection.get("batch_size", model.batch_size), "selection.batch_size", 1)}

    gen = raw.get("generation") or {}
    c.keys(gen, GENERATION_KEYS, "generation")
    generation = {"temperature": gen.get("temperature", 0.0), "top_p": gen.get("top_p", 1.0),
                  "max_new_tokens": gen.get("max_new_tokens")}
    if not isinstance(generation["temperature"], (int, float)) or generation["temperature"] < 0:
        c.fail("generation.temperature", f"must be >= 0, got {generation['temperature']!r}")
    if not isinstance(generation["top_p"], (int, float)) or not 0 < generation["top_p"] <= 1:
        c.fail("generation.top_p", f"must be in (0, 1], got {generation['top_p']!r}")
    if generation["max_new_tokens"] is not None:
        c.int_(generation["max_new_tokens"], "generation.max_new_tokens", 1)

    # suites
    suites_raw = raw.get("suites")
    if not isinstance(suites_raw, list) or not suites_raw:
        c.fail("suites", "expected a non-empty list of evaluation suites ({name: arc_easy, limit: 50})")
    known_suites = SUITES.names()
    suites: list[SuiteSpec] = []
    slabels: set[str] = set()
    for i, entry in enumerate(suites_raw):
        key = f"suites[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        c.keys(entry, SUITE_KEYS, key)
        sname = entry.get("name")
        if sname not in known_suites:
            c.fail(f"{key}.name", f"unknown suite '{sname}' (known: {', '.join(known_suites)})")
        if mode == "icl" and sname in MODEL_ONLY_SUITES:
            c.fail(f"{key}.name", f"suite '{sname}' scores the model alone (no in-context examples): in mode icl "
                                  f"every cell would score the same")
        if sname not in PRIMARY_METRICS:
            c.fail(f"{key}.name", f"suite '{sname}' has no per-item scores for an experiment "
                                  f"(usable: {', '.join(sorted(PRIMARY_METRICS))})")
        limit = entry.get("limit")
        if limit is not None:
            c.int_(limit, f"{key}.limit", 1)
        data = None
        if entry.get("data") is not None:
            if sname not in REFERENCE_SUITES:
                c.fail(f"{key}.data", f"suite '{sname}' has its own items; data: applies to "
                                      f"{', '.join(REFERENCE_SUITES)}")
            data = _source(c, entry["data"], f"{key}.data")
        mnt = entry.get("max_new_tokens")
        if mnt is not None:
            c.int_(mnt, f"{key}.max_new_tokens", 1)
        label = entry.get("label") or sname
        if label in slabels:
            c.fail(f"{key}.label", f"'{label}' is used twice (give one of them a distinct label:)")
        slabels.add(label)
        suites.append(SuiteSpec(name=sname, label=label, limit=limit, data=data, max_new_tokens=mnt))

    judge = raw.get("judge", "local")
    if not (judge in ("local", "remote") or isinstance(judge, dict)):
        c.fail("judge", f"expected local, remote or a mapping of judge options, got {judge!r}")
    embedder = raw.get("embedder", "minilm")
    if embedder is not None:
        c.str_(embedder, "embedder")

    return ExperimentConfig(path=path, name=str(name), model=model, embedder=embedder, judge=judge, mode=mode,
                            executor=executor, pool=pool, target=target, existing=existing,
                            base_train_on=base_train_on, budgets=norm_budgets, random_seeds=random_seeds,
                            methods=methods, zero_shot=zero_shot, full=full, max_train_tokens=max_train_tokens,
                            train=dict(train), icl=icl, suites=suites, selection=selection, generation=generation,
                            delia=delia, tiny=tiny)


def _is_stochastic(cls: Any, params: dict[str, Any]) -> bool:
    test = getattr(cls, "is_stochastic", None)
    if callable(test):
        return bool(test({**getattr(cls, "defaults", {}), **params}))
    return bool(getattr(cls, "stochastic", False))


def _source(c: _Checker, raw: Any, key: str) -> SourceSpec:
    if isinstance(raw, str):
        raw = {"source": raw}
    c.keys(raw, SOURCE_KEYS, key)
    if "source" not in raw:
        c.fail(f"{key}.source", "missing source (a file, a folder, bundled:NAME or a hub id)")
    src = c.str_(raw["source"], f"{key}.source")
    if not (src.startswith("bundled:") or os.path.exists(src) or _looks_like_hub_id(src)):
        c.fail(f"{key}.source", f"source not found: {src}")
    if src.startswith("bundled:"):
        from ..data.bundled import bundled_path

        try:
            bundled_path(src.split(":", 1)[1])
        except Exception as e:  # noqa: BLE001 - the bundled module names the set
            c.fail(f"{key}.source", str(e))
    tasks = raw.get("tasks")
    excl = raw.get("exclude_tasks")
    for k, v in (("tasks", tasks), ("exclude_tasks", excl)):
        if v is not None and (not isinstance(v, list) or not all(isinstance(t, str) for t in v) or not v):
            c.fail(f"{key}.{k}", f"expected a non-empty list of task names, got {v!r}")
    per_task = c.range_(raw["per_task"], f"{key}.per_task") if raw.get("per_task") is not None else None
    sl = c.range_(raw["slice"], f"{key}.slice") if raw.get("slice") is not None else None
    if raw.get("limit") is not None:
        if sl is not None:
            c.fail(f"{key}.limit", "give either limit: or slice:, not both")
        sl = (0, c.int_(raw["limit"], f"{key}.limit", 1))
    return SourceSpec(source=src, tasks=tasks, exclude_tasks=excl, per_task=per_task, slice=sl)


def _looks_like_hub_id(src: str) -> bool:
    parts = src.split("/")
    return len(parts) == 2 and all(parts) and not src.startswith((".", "/", "~"))


def _seeds(c: _Checker, v: Any, key: str) -> list[int]:
    if isinstance(v, int) and not isinstance(v, bool):
        c.int_(v, key, 1)
        return list(range(v))
    if isinstance(v, list) and v:
        seeds = [c.int_(s, f"{key}[{i}]", 0) for i, s in enumerate(v)]
        if len(set(seeds)) != len(seeds):
            c.fail(key, f"repeated seed in {v}")
        return seeds
    c.fail(key, f"expected a seed count or a list of seeds, got {v!r}")
    return []


_TRAIN_OWNED = {"model", "device", "dtype", "system", "progress", "seed"}  # set by the runner, per cell


def _train_fields(c: _Checker, train: Any, key: str, model: ModelSpec, delia_cache_built: bool) -> None:
    if not isinstance(train, dict):
        c.fail(key, f"expected a mapping of training options, got {train!r}")
    from dataclasses import fields

    allowed = {f.name for f in fields(TrainConfig)} - _TRAIN_OWNED
    c.keys(train, allowed, key)
    try:
        cfg = TrainConfig(**{**train, "model": model.name, "progress": False})
        if cfg.method == "delia" and not cfg.cache:
            if not delia_cache_built:
                c.fail(f"{key}.method", "train method delia needs a cache: a top-level 'delia: {queries: ...}' "
                                        "(built once by the run) or cache: FILE ('datawinnow delia build-cache')")
            cfg.cache = "<built by the run>"
        cfg.validate()
    except ConfigError as e:
        c.fail(key, str(e))
    except TypeError as e:
        c.fail(key, str(e))
