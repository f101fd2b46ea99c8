"""Run an experiment grid: every cell selects, trains (or prompts in context), evaluates; every stage
is cached (see :mod:`.cells`) and RUN_DIR/results.json is rewritten atomically after each cell, so a
killed run continues where it stopped. :func:`plan_text` is the dry run."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..cache import atomic_write_json, stable_hash
from ..data.record import Dataset
from ..errors import ConfigError
from .cells import (
    ZERO_COST, AdapterStore, CacheStats, StageStore, check_disjoint, evaluation_key, experiments_root,
    extract_scores, model_identity, primary_metric, selection_key, training_key,
)
from .config import ExperimentConfig, SuiteSpec
from .cost import (
    ASSUMED_RATES, SELECTION_PASSES, Cost, MeteredContext, TokenMeter, count_params, human_flops, human_seconds,
)
from .plan import Cell, build_cells, is_pool_method, load_source

RESULTS_FILE = "results.json"
STATS_FILE = "cache_stats.json"


@dataclass
class Stage:
    """What one stage of one cell resolves to before running: its cache key and whether it is stored."""

    key: str | None
    cached: bool


class Experiment:
    """A validated config bound to its data: pool, extra sources, evaluation data, cells, keys."""

    def __init__(self, cfg: ExperimentConfig, out_dir: str | os.PathLike, *, quiet: bool = False,
                 command: str = "", embedder: Any = None):
        """``embedder``: a loaded sentence embedder to use instead of loading ``cfg.embedder`` (API callers)."""
        if cfg.executor != "local":
            raise ConfigError(f"{cfg.path}: executor: only 'local' is available")
        self.cfg, self.out = cfg, Path(out_dir)
        self.quiet, self.command = quiet, command
        self.stats = CacheStats()
        self.meter = TokenMeter()
        self.selections, self.evals = StageStore("selections"), StageStore("evals")
        self.groups = StageStore("selection-groups")
        self.adapters, self.bases = AdapterStore("adapters"), AdapterStore("bases")
        self._tokenizer = None
        self._ctx: MeteredContext | None = None
        self._eval_ctx: MeteredContext | None = None
        self._n_params: int | None = None
        self._embedder_obj = embedder
        self._load_data()

    # ------------------------------------------------------------------------------------ data
    def _load_data(self) -> None:
        cfg = self.cfg
        self.pool = load_source(cfg.pool, "pool", cfg.path)
        ids = self.pool.ids
        if len(set(ids)) != len(ids):
            raise ConfigError(f"{cfg.path}: pool: record ids repeat in {cfg.pool.source}")
        self.sources: dict[str, Dataset] = {}
        if cfg.target is not None:
            self.sources["target"] = load_source(cfg.target, "target", cfg.path)
        if cfg.existing is not None:
            self.sources["existing"] = load_source(cfg.existing, "existing", cfg.path)
        self.eval_data: dict[str, Dataset | None] = {}
        for i, s in enumerate(cfg.suites):
            self.eval_data[s.label] = load_source(s.data, f"suites[{i}].data", cfg.path) if s.data else None
        check_disjoint({"the pool": self.pool, **{f"the {k} source": v for k, v in self.sources.items()}},
                       {f"suite {k}": v for k, v in self.eval_data.items() if v is not None}, cfg.path)
        self.pool_fp = self.pool.fingerprint()
        self.sources_fp = {k: v.fingerprint() for k, v in self.sources.items()}

    # ---------------------------------------------------------------------------- model identity
    @property
    def model_name(self) -> str:
        """The model every cell starts from: the configured one, or it tuned on the existing data first."""
        if self.cfg.base_train_on:
            return str(self.bases.path(self.base_key()))
        return self.cfg.model.name

    def base_key(self) -> str:
        m = self.cfg.model
        return stable_hash({"stage": "base", "model": model_identity(m.name, m.device, m.dtype),
                            "existing": self.sources_fp.get("existing"), "train": self.cfg.train}, 24)

    def base_ready(self) -> bool:
        return not self.cfg.base_train_on or self.bases.get(self.base_key()) is not None

    @property
    def model_id(self) -> str:
        m = self.cfg.model
        if self.cfg.base_train_on and not self.base_ready():
            return f"base:{self.base_key()}"  # not built yet (dry run): every key below is new
        return model_identity(self.model_name, m.device, m.dtype)

    @property
    def embedder_id(self) -> str | None:
        if self._embedder_obj is not None:
            return getattr(self._embedder_obj, "identity", type(self._embedder_obj).__name__)
        return self.cfg.embedder

    # ---------------------------------------------------------------------------------- planning
    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            from ..backends.embedded import LM_ALIASES, smollm2_dense_dir

            name = self.cfg.model.name
            path = str(smollm2_dense_dir()) if name in LM_ALIASES else name
            self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=os.path.isdir(path))
        return self._tokenizer

    def record_tokens(self, ds: Dataset, max_length: int) -> list[int]:
        from ..data.prompts import PromptRenderer

        tok = self.tokenizer()
        renderer = PromptRenderer(tok, self.cfg.model.system)
        return [min(max_length, len(tok(renderer.prompt(r) + r.output, add_special_tokens=False)["input_ids"]))
                for r in ds]

    def train_settings(self, cell: Cell) -> dict[str, Any]:
        merged = {**self.cfg.train, **cell.train}
        if is_pool_method(cell):
            merged["ratio"] = cell.budget
        if merged.get("method") == "delia" and not merged.get("cache"):
            merged["cache"] = str(self.delia_cache_path())
        return merged

    # ------------------------------------------------------------------------------ DELIA cache
    def delia_cache_path(self) -> Path:
        d = self.cfg.delia
        key = stable_hash({"stage": "delia", "model": self.model_id, "queries": d["queries"].as_dict(),
                           "max_new_tokens": d["max_new_tokens"], "temperature": d["temperature"],
                           "top_p": d["top_p"]}, 24)
        return experiments_root() / "delia" / f"{key}.jsonl"

    def ensure_delia_cache(self, tc) -> dict[str, Any]:
        """Build the DELIA cache (the base model answers the configured queries) once; its cost is part of the
        training cost of every cell that mixes it in."""
        path = self.delia_cache_path()
        meta = StageStore("delia").get(path.stem)
        if meta is not None:
            return meta["cost"]
        from ..train.delia import build_cache

        d = self.cfg.delia
        queries = load_source(d["queries"], "delia.queries", self.cfg.path)
        lm = self.ctx.model
        snap = self.meter.snapshot()
        build_cache(queries, lm, path, batch_size=self.cfg.model.batch_size, temperature=d["temperature"],
                    top_p=d["top_p"], max_new_tokens=d["max_new_tokens"], seed=0, progress=False)
        cost = self.meter.since(snap).as_dict()
        StageStore("delia").put(path.stem, {"cost": cost, "path": str(path), "n": len(queries)})
        return cost

    def _train_config(self, cell: Cell):
        from ..train import TrainConfig

        m = self.cfg.model
        return TrainConfig(**{**self.train_settings(cell), "model": self.model_name, "device": m.device,
                              "dtype": m.dtype, "system": m.system, "progress": False, "seed": cell.seed}).validate()

    def full_fits(self) -> tuple[bool, int]:
        """(whether the full-pool cell runs, its training tokens)."""
        from ..train import TrainConfig

        cfg = self.cfg
        tc = TrainConfig(**{**cfg.train, "model": cfg.model.name})
        tokens = int(sum(self.record_tokens(self.pool, tc.max_length)) * tc.num_epochs)
        if cfg.full is True:
            return True, tokens
        if cfg.full is False:
            return False, tokens
        return tokens <= int(cfg.max_train_tokens), tokens

    def cells(self) -> list[Cell]:
        if not hasattr(self, "_cells"):
            fits, self.full_tokens = self.full_fits()
            self._cells = build_cells(self.cfg, len(self.pool), full_fits=fits)
        return self._cells

    # ----------------------------------------------------------------------------------- keys
    def sel_key(self, cell: Cell) -> str | None:
        if cell.kind in ("zero_shot", "full") or is_pool_method(cell):
            return None
        return selection_key(self.cfg, method=cell.method, params=cell.params, budget_n=cell.budget_n,
                             seed=cell.seed, pool_fp=self.pool_fp, model_id=self.model_id, sources_fp=self.sources_fp,
                             embedder_id=self.embedder_id)

    def subset_fp(self, ids: list[str]) -> str:
        return stable_hash({"pool": self.pool_fp, "ids": ids}, 24)

    def train_key(self, cell: Cell, ids: list[str]) -> str | None:
        if self.cfg.mode != "finetune" or cell.kind == "zero_shot":
            return None
        return training_key(subset_fp=self.subset_fp(ids), train=self.train_settings(cell), seed=cell.seed,
                            model_id=self.model_id, extra={"system": self.cfg.model.system})

    def subject(self, cell: Cell, ids: list[str], tkey: str | None) -> dict[str, Any]:
        if cell.kind == "zero_shot":
            return {"model": self.model_id}
        if self.cfg.mode == "finetune":
            return {"model": self.model_id, "adapter": tkey}
        return {"model": self.model_id, "icl": self.subset_fp(ids), **self.cfg.icl}

    # --------------------------------------------------------------------------------- backends
    @property
    def ctx(self) -> MeteredContext:
        """The base model's context: selection, zero-shot and ICL evaluation, and the (fixed) judge."""
        if self._ctx is None:
            m = self.cfg.model
            emb = self._embedder_obj if self._embedder_obj is not None else self.cfg.embedder
            self._ctx = MeteredContext(self.meter, model=self.model_name, embedder=emb, device=m.device,
                                       dtype=m.dtype, system=m.system, max_length=m.max_length,
                                       batch_size=self.cfg.selection["batch_size"],
                                       use_cache=self.cfg.selection["score_cache"], progress=False, seed=0,
                                       sources=dict(self.sources), judge=self.cfg.judge)
        return self._ctx

    @property
    def eval_ctx(self) -> MeteredContext:
        """The base model for zero-shot and ICL evaluation: the same loaded model and embedder as :attr:`ctx`,
        with the generation/judging caches always on (selection may run without the score cache)."""
        if self._eval_ctx is None:
            m = self.cfg.model
            self._eval_ctx = MeteredContext(self.meter, model=self.ctx.model, embedder=self.ctx._embedder,
                                            device=m.device, dtype=m.dtype, system=m.system, max_length=m.max_length,
                                            batch_size=m.batch_size, use_cache=True, progress=False, seed=0)
        return self._eval_ctx

    def _share_embedder(self, ctx: MeteredContext) -> None:
        for other in (self._ctx, self._eval_ctx):
            if other is not None and other is not ctx and not _loaded(other._embedder) and _loaded(ctx._embedder):
                other._embedder = ctx._embedder

    def n_params(self) -> int:
        if self._n_params is None:
            store = StageStore("models")
            key = stable_hash({"model": self.model_id}, 24)
            hit = store.get(key)
            if hit is not None:
                self._n_params = int(hit["n_params"])
            else:
                self._n_params = count_params(self.ctx.model.model)
                store.put(key, {"model": self.model_id, "n_params": self._n_params})
        return self._n_params

    # ------------------------------------------------------------------------------------- stages
    def ensure_base(self) -> None:
        """Tune the base model on the existing data (LoRA, merged into the weights) once, if configured."""
        if not self.cfg.base_train_on:
            return
        key = self.base_key()
        if self.bases.get(key) is not None:
            self.stats.hit("base")
            return
        self.stats.miss("base")
        from ..train import TrainConfig, train
        from ..train.sft import load_model

        m = self.cfg.model
        tc = TrainConfig(**{**self.cfg.train, "method": "sft", "model": m.name, "device": m.device, "dtype": m.dtype,
                            "system": m.system, "progress": False, "seed": 0}).validate()
        lm = load_model(tc)
        self.meter.attach_lm(lm)
        snap = self.meter.snapshot()
        tmp = self.bases.staging(key)
        res = train(self.sources["existing"], tc, str(tmp / "adapter"), lm=lm)
        merged = res.info["trainer"].model.merge_and_unload()
        merged.save_pretrained(str(tmp))
        lm.tokenizer.save_pretrained(str(tmp))
        shutil.rmtree(tmp / "adapter", ignore_errors=True)  # merged into the weights
        self.bases.commit(key, tmp, {"cost": self.meter.since(snap).as_dict(), "n": len(self.sources["existing"])})

    def select(self, cell: Cell) -> tuple[list[str], dict[str, Any]]:
        if cell.kind == "zero_shot":
            return [], ZERO_COST
        if cell.kind == "full" or is_pool_method(cell):
            return list(self.pool.ids), ZERO_COST
        key = self.sel_key(cell)
        hit = self.selections.get(key)
        if hit is not None:
            self.stats.hit("selection")
            return hit["selected_ids"], hit["cost"]
        self.stats.miss("selection")
        from ..registry import METHODS

        ctx = self.ctx
        ctx.seed = cell.seed
        group = self.group_key(cell)
        first = None
        if self.cfg.selection["score_cache"]:
            first = self.groups.get(group)
            if first is None:  # the group's first selection starts from an empty private cache
                shutil.rmtree(self.group_cache(group), ignore_errors=True)
        snap = self.meter.snapshot()
        with (private_cache(self.group_cache(group)) if self.cfg.selection["score_cache"]
              else contextlib.nullcontext()):
            sel = METHODS.get(cell.method)(**cell.params).run(self.pool, cell.budget_n, ctx)
        measured = self.meter.since(snap)
        self._share_embedder(ctx)
        if self.cfg.selection["score_cache"] and first is None:
            self.groups.put(group, {"cost": measured.as_dict(), "first_budget_n": cell.budget_n})
        # with shared scores, a later budget reports the group's from-scratch cost plus its own extra work
        cost = (measured if first is None else Cost.from_dict(first["cost"]) + measured).as_dict()
        self.selections.put(key, {"selected_ids": list(sel.selected), "cost": cost, "measured": measured.as_dict(),
                                  "method": cell.method, "params": sel.params, "budget_n": cell.budget_n,
                                  "seed": cell.seed})
        return list(sel.selected), cost

    def group_key(self, cell: Cell) -> str:
        """A selection group: one method with its parameters and seed on this pool, all budgets."""
        return selection_key(self.cfg, method=cell.method, params=cell.params, budget_n=-1, seed=cell.seed,
                             pool_fp=self.pool_fp, model_id=self.model_id, sources_fp=self.sources_fp,
                             embedder_id=self.embedder_id)

    def group_cache(self, group: str) -> Path:
        return experiments_root() / "selection-caches" / group

    def train(self, cell: Cell, ids: list[str]) -> tuple[str | None, dict[str, Any]]:
        key = self.train_key(cell, ids)
        if key is None:
            return None, ZERO_COST
        hit = self.adapters.get(key)
        if hit is not None:
            self.stats.hit("training")
            return str(self.adapters.path(key)), hit["cost"]
        self.stats.miss("training")
        from ..train import train
        from ..train.sft import load_model

        tc = self._train_config(cell)
        extra = Cost()
        if tc.method == "delia":
            if self.cfg.delia is not None and tc.cache == str(self.delia_cache_path()):
                extra = Cost.from_dict(self.ensure_delia_cache(tc))
            elif not os.path.isfile(str(tc.cache)):
                raise ConfigError(f"{self.cfg.path}: train.cache: DELIA cache file not found: {tc.cache} "
                                  f"(build it with 'datawinnow delia build-cache')")
        lm = load_model(tc)
        self.meter.attach_lm(lm)
        snap = self.meter.snapshot()
        tmp = self.adapters.staging(key)
        res = train(self.pool.subset(ids), tc, str(tmp), lm=lm)
        cost = (self.meter.since(snap) + extra).as_dict()
        path = self.adapters.commit(key, tmp, {"cost": cost, "n": len(ids), "steps": res.info["trainer"].state.global_step,
                                               "train_loss": res.metrics.get("train_loss")})
        del res, lm
        return str(path), cost

    def evaluate(self, cell: Cell, ids: list[str], adapter: str | None, tkey: str | None) -> tuple[dict, dict]:
        """Per suite label: the summary and per-item scores; and the evaluation cost (summed over suites)."""
        subject = self.subject(cell, ids, tkey)
        out: dict[str, Any] = {}
        total = Cost()
        ctx = None
        for suite in self.cfg.suites:
            key = evaluation_key(self.cfg, suite, subject=subject, embedder_id=self.embedder_id)
            hit = self.evals.get(key)
            if hit is not None:
                self.stats.hit("evaluation")
                out[suite.label] = hit["scores"]
                total = total + Cost.from_dict(hit["cost"])
                continue
            self.stats.miss("evaluation")
            if ctx is None:
                ctx = self._eval_context(adapter)
            snap = self.meter.snapshot()
            scores = self._run_suite(suite, ctx, cell, ids)
            cost = self.meter.since(snap).as_dict()
            self.evals.put(key, {"scores": scores, "cost": cost, "suite": suite.name, "subject": subject})
            out[suite.label] = scores
            total = total + Cost.from_dict(cost)
        if ctx is not None:
            self._share_embedder(ctx)  # later cells reuse a loaded embedder
        return out, total.as_dict()

    def _eval_context(self, adapter: str | None) -> MeteredContext:
        if adapter is None:
            return self.eval_ctx
        from ..backends.causal_lm import CausalLM

        m = self.cfg.model
        lm = CausalLM.load(f"{self.model_name}+{adapter}", device=m.device, dtype=m.dtype, system=m.system,
                           max_length=m.max_length)
        emb = next((c._embedder for c in (self._ctx, self._eval_ctx) if c is not None and _loaded(c._embedder)),
                   self.cfg.embedder)
        return MeteredContext(self.meter, model=lm, embedder=emb, device=m.device, dtype=m.dtype,
                              system=m.system, max_length=m.max_length, batch_size=m.batch_size,
                              use_cache=True, progress=False, seed=0)

    def _run_suite(self, suite: SuiteSpec, ctx: MeteredContext, cell: Cell, ids: list[str]) -> dict[str, Any]:
        from ..evaluate import EvalSession, GenerationParams, evaluate
        from ..evaluate.icl import ICLExamples

        g = self.cfg.generation
        icl = None
        if self.cfg.mode == "icl" and cell.kind != "zero_shot":
            icl = ICLExamples(self.pool.subset(ids), ctx.embedder, k=self.cfg.icl["k"],
                              max_tokens=self.cfg.icl["max_tokens"])
        base = self.ctx
        session = EvalSession(ctx, gen=GenerationParams(temperature=float(g["temperature"]), top_p=float(g["top_p"]),
                                                        seed=0),
                              max_new_tokens=suite.max_new_tokens or g["max_new_tokens"],
                              data=self.eval_data.get(suite.label), judge_loader=lambda: base.judge, icl=icl,
                              limit=suite.limit, options={"rubric_reference": True, "judge_probs": True,
                                                          "mc_template": "chat"})
        # the evaluation items are checked against every training source once, up front (check_disjoint);
        # the per-cell n-gram check is skipped so every cell is scored on the same items
        res = evaluate([suite.name], session, allow_contaminated=True)
        return extract_scores(suite.name, res["suites"][suite.name])

    # --------------------------------------------------------------------------------------- run
    def run(self, *, on_cell: Callable[[Cell, dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Run (or resume) every cell; returns the results dict also written to RUN_DIR/results.json."""
        self.out.mkdir(parents=True, exist_ok=True)
        with _cell_display():
            return self._run(on_cell)

    def _run(self, on_cell) -> dict[str, Any]:
        from tqdm.auto import tqdm

        self.ensure_base()
        cells = self.cells()
        results = self._results_header()
        results["planned_cells"] = [c.key for c in cells]  # a report on a stopped run says what is missing
        done: list[dict[str, Any]] = []
        bar = tqdm(total=len(cells), desc="experiment", unit="cell", disable=self.quiet, dynamic_ncols=True,
                   file=sys.stderr, smoothing=0.3)
        try:
            for cell in cells:
                bar.set_postfix_str(cell.key, refresh=True)
                record = self.run_cell(cell)
                done.append(record)
                results["cells"] = done
                results["model"]["n_params"] = self.n_params()
                atomic_write_json(self.out / RESULTS_FILE, results)
                atomic_write_json(self.out / STATS_FILE, self.stats.as_dict())
                bar.update(1)
                if on_cell is not None:
                    on_cell(cell, record)
        finally:
            bar.close()
            atomic_write_json(self.out / STATS_FILE, self.stats.as_dict())
        self._record_rates(done)
        return results

    def run_cell(self, cell: Cell) -> dict[str, Any]:
        ids, sel_cost = self.select(cell)
        adapter, tcost = self.train(cell, ids)
        tkey = self.train_key(cell, ids)
        suites, ecost = self.evaluate(cell, ids, adapter, tkey)
        return {"key": cell.key, "kind": cell.kind, "method": cell.label, "params": cell.params,
                "budget": cell.budget, "budget_n": cell.budget_n, "seed": cell.seed, "selected_ids": ids,
                "cost": {"selection": sel_cost, "training": tcost, "evaluation": ecost}, "suites": suites,
                **({"registered_method": cell.method} if cell.method != cell.label else {}),
                **({"train": self.train_settings(cell)} if cell.train else {})}

    def _results_header(self) -> dict[str, Any]:
        from ..backends.device import dtype_name, pick_device, pick_dtype
        from ..runtime.describe import package_version

        m = self.cfg.model
        dev = pick_device(m.device)
        gpu = None
        if dev.type == "cuda":
            import torch

            gpu = torch.cuda.get_device_name(dev)
        return {
            "schema": 1, "datawinnow_version": package_version(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": self.command,
            "machine": {"cpu": _cpu_name(), "cores": os.cpu_count() or 1, "device": dev.type,
                        "dtype": dtype_name(pick_dtype(m.dtype, dev)), "gpu": gpu},
            "config": self.cfg.as_dict(),
            "model": {"name": m.name, "identity": self.model_id, "n_params": None,
                      **({"base": {"trained_on": "existing", "path": self.model_name}} if self.cfg.base_train_on else {})},
            "pool": {"source": self.cfg.pool.source, "n": len(self.pool), "fingerprint": self.pool_fp},
            "mode": self.cfg.mode,
            "suites": {s.label: {"suite": s.name, "metric": primary_metric(s.name), "higher_is_better": True,
                                 "limit": s.limit} for s in self.cfg.suites},
            "cells": [],
        }

    # ---------------------------------------------------------------------------------- estimates
    def _rates(self) -> tuple[dict[str, float], bool]:
        hit = StageStore("throughput").get(stable_hash({"model": self.model_id, "machine": platform.node()}, 24))
        if hit is not None:
            return hit["rates"], True
        return dict(ASSUMED_RATES), False

    def _record_rates(self, cells: list[dict[str, Any]]) -> None:
        inf_tok = inf_s = tr_tok = tr_s = 0.0
        for c in cells:
            for part in ("selection", "evaluation"):
                inf_tok += c["cost"][part]["fwd_tokens"]
                inf_s += c["cost"][part]["seconds"]
            tr_tok += c["cost"]["training"]["fwd_tokens"]
            tr_s += c["cost"]["training"]["seconds"]
        rates, _ = self._rates()
        if inf_s > 0 and inf_tok:
            rates["inference"] = inf_tok / inf_s
        if tr_s > 0 and tr_tok:
            rates["train"] = tr_tok / tr_s
        StageStore("throughput").put(stable_hash({"model": self.model_id, "machine": platform.node()}, 24),
                                     {"rates": rates, "model": self.model_id})

    def plan_text(self) -> str:
        """The dry run: every cell, what of it is cached, and the estimated cost of what is not."""
        cfg = self.cfg
        cells = self.cells()
        rates, measured = self._rates()
        rates = {**ASSUMED_RATES, **rates}
        n_params = self._estimate_params()
        tc_tokens = self.record_tokens(self.pool, self.cfg.model.max_length)
        mean_tok = sum(tc_tokens) / max(1, len(tc_tokens))
        pool_tokens = sum(tc_tokens)
        suites = ", ".join(f"{s.label} ({primary_metric(s.name)}, {s.limit or 'all'} items)" for s in cfg.suites)
        lines = [f"experiment {cfg.name} ({cfg.path}{', tiny' if cfg.tiny else ''}): mode {cfg.mode}, "
                 f"model {cfg.model.name} ({n_params / 1e6:.0f}M parameters), pool {cfg.pool.source} "
                 f"({len(self.pool)} records, {pool_tokens:,} tokens), executor {cfg.executor}",
                 f"suites: {suites}",
                 f"full pool: {'included' if any(c.kind == 'full' for c in cells) else 'left out'} "
                 f"({self.full_tokens:,} training tokens; cap {cfg.max_train_tokens or '-'}; full: {cfg.full})"]
        if cfg.base_train_on:
            lines.append(f"base model: tuned on the existing data first ({'cached' if self.base_ready() else 'to train'})")
        lines.append("")
        header = f"{'cell':<34} {'n':>5}  {'select':<8} {'train':<8} {'eval':<9} {'est. tokens':>12} {'est. FLOPs':>12}"
        lines += [header, "-" * len(header)]
        tot_inf = tot_train = 0.0
        n_todo = 0
        groups_paid: set[str] = set()
        for cell in cells:
            skey = self.sel_key(cell)
            shit = skey is None or self.selections.get(skey) is not None
            ids = None
            if skey is not None and shit:
                ids = self.selections.get(skey)["selected_ids"]
            elif skey is None:
                ids = self.select(cell)[0] if cell.kind != "zero_shot" else []
            if cfg.mode == "finetune" and cell.kind != "zero_shot":
                thit = ids is not None and self.adapters.get(self.train_key(cell, ids)) is not None
                tstate = "cached" if thit else "to run"
            else:
                thit, tstate = True, "-"
            ehit = 0
            if ids is not None and thit:
                tkey = self.train_key(cell, ids)
                subj = self.subject(cell, ids, tkey)
                ehit = sum(self.evals.get(evaluation_key(cfg, s, subject=subj, embedder_id=self.embedder_id)) is not None for s in cfg.suites)
            inf = 0.0 if shit else SELECTION_PASSES.get(cell.method, 1.0) * pool_tokens
            if skey is not None and not shit and cfg.selection["score_cache"]:
                group = self.group_key(cell)
                if group in groups_paid or self.groups.get(group) is not None:
                    inf = 0.0  # scores shared within the group: later budgets pay only their own greedy pass
                groups_paid.add(group)
            tr = 0.0 if thit else cell.budget_n * mean_tok * self._epochs(cell)
            inf += sum(self._suite_tokens(s) for s in cfg.suites[ehit:]) if ehit < len(cfg.suites) else 0.0
            if not (shit and thit and ehit == len(cfg.suites)):
                n_todo += 1
            tot_inf += inf
            tot_train += tr
            sstate = "-" if skey is None else ("cached" if shit else "to run")
            lines.append(f"{cell.key:<34} {cell.budget_n:>5}  {sstate:<8} "
                         f"{tstate:<8} {f'{ehit}/{len(cfg.suites)} done':<9} {int(inf + tr):>12,} "
                         f"{human_flops(2 * n_params * inf + 6 * n_params * tr):>12}")
        seconds = tot_inf / rates["inference"] + tot_train / rates["train"]
        lines += ["", f"{len(cells)} cells, {len(cells) - n_todo} finished, {n_todo} to run",
                  f"estimated: {int(tot_inf):,} inference tokens + {int(tot_train):,} training tokens = "
                  f"{human_flops(2 * n_params * tot_inf + 6 * n_params * tot_train)}; about {human_seconds(seconds)} "
                  f"at {rates['inference']:.0f} inference and {rates['train']:.0f} training tokens/s "
                  f"({'measured on this machine' if measured else 'assumed: nothing measured here yet'})"]
        return "\n".join(lines)

    def _epochs(self, cell: Cell) -> float:
        from ..train import TrainConfig

        return TrainConfig(**{**self.train_settings(cell), "model": self.cfg.model.name}).num_epochs

    def _suite_tokens(self, suite: SuiteSpec) -> float:
        """Rough inference tokens of one suite: items x (prompt + new tokens), judged suites twice over."""
        n = suite.limit or 100
        new = suite.max_new_tokens or self.cfg.generation["max_new_tokens"] or 256
        if suite.name in ("arc_easy", "arc_challenge", "mmlu"):
            return n * 4 * 120.0
        per = 150.0 + new
        if suite.name in ("rubric", "winrate"):
            per += 300.0 + new + (128 if suite.name == "rubric" else 0)
        return n * per

    def _estimate_params(self) -> int:
        store = StageStore("models")
        hit = store.get(stable_hash({"model": self.model_id}, 24))
        if hit is not None:
            return int(hit["n_params"])
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        from ..backends.embedded import LM_ALIASES, smollm2_dense_dir

        name = self.cfg.model.name
        path = str(smollm2_dense_dir()) if name in LM_ALIASES else name
        conf = AutoConfig.from_pretrained(path, local_files_only=os.path.isdir(path))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(conf)
        return count_params(model)


@contextlib.contextmanager
def private_cache(root: Path):
    """Point the datawinnow cache at ``root`` (score and kernel stores, LoRA warm-ups) for the duration,
    with the embedded models shared through a link, so a selection group's caches start empty and are
    seen by no other group."""
    from ..cache import cache_root, use_cache_root

    real = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    (real / "models").mkdir(parents=True, exist_ok=True)
    link = root / "models"
    if not link.exists():
        link.symlink_to((real / "models").resolve(), target_is_directory=True)
    with use_cache_root(root):
        yield


INNER_LOGGERS = ("datawinnow.scores", "datawinnow.select", "datawinnow.kernels", "datawinnow.train",
                 "datawinnow.evaluate", "datawinnow.backends", "datawinnow.data")


@contextlib.contextmanager
def _cell_display():
    """The cell bar is the run's progress display: the libraries' bars and logs and the per-stage INFO lines
    of datawinnow's own layers (scored N samples, trained N steps) are held back; warnings still show."""
    import logging

    from ..logs import silence_libraries

    silence_libraries()
    loggers = [logging.getLogger(name) for name in INNER_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _loaded(backend: Any) -> bool:
    return backend is not None and not isinstance(backend, str)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="ignore") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_experiment(config_path: str, out_dir: str, *, tiny: bool = False, dry_run: bool = False, quiet: bool = False,
                   executor: str | None = None, command: str = "", embedder: Any = None,
                   on_cell: Callable[[Cell, dict[str, Any]], None] | None = None) -> tuple[Experiment, Any]:
    """Validate, then either print the plan (``dry_run``) or run the grid. Returns (experiment, results or plan)."""
    from .config import EXECUTORS, read_config

    cfg = read_config(config_path, tiny=tiny)
    if executor is not None:
        if executor not in EXECUTORS:
            raise ConfigError(f"--executor: unknown executor '{executor}' (known: {', '.join(EXECUTORS)})")
        cfg.executor = executor
    exp = Experiment(cfg, out_dir, quiet=quiet, command=command, embedder=embedder)
    if dry_run:
        return exp, exp.plan_text()
    return exp, exp.run(on_cell=on_cell)


__all__ = ["Experiment", "RESULTS_FILE", "STATS_FILE", "run_experiment", "experiments_root"]
