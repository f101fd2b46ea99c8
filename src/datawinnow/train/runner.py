"""``train(source, cfg, out_dir)``: one entry point for the three training modes (sft, iterit, delia)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data import load
from ..data.record import Dataset
from .config import TrainConfig
from .iterit import LOG_FILE as ITERIT_LOG, IterITSampler, IterITSchedule, ScoreFn, ifd_score_fn, make_callback, tfidf_matrix
from .sft import TrainResult, run_sft


def train(source: Any, cfg: TrainConfig, out_dir: str, *, eval_source: Any = None, lm=None,
          score_fn: ScoreFn | None = None, columns: Any = None) -> TrainResult:
    """Train a LoRA adapter on ``source`` with ``cfg.method``; see :mod:`datawinnow.train`.

    ``score_fn`` replaces IterIT's IFD scorer (tests use a stub); ``eval_source`` is where the
    per-token loss of ``--new-token`` / ``report_tokens`` is measured (default: the training data).
    """
    cfg.validate()
    records = source if isinstance(source, Dataset) else load(source, column_map=columns)
    eval_records = None if eval_source is None else (eval_source if isinstance(eval_source, Dataset)
                                                     else load(eval_source, column_map=columns))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest: Any = None
    mix_info: dict[str, Any] | None = None
    if cfg.method == "delia":
        from .delia import mix_cache

        cache = load(cfg.cache)
        records, mix_info = mix_cache(records, cache, cfg.diverse_ratio, cfg.seed)
        # the cache samples by their ids in the cache file: the contamination check reads them back
        manifest = {"delia": {k: v for k, v in mix_info.items() if k != "cache_ids"},
                    "mixed_in": [{"source": cache.path, "fingerprint": mix_info["cache_fingerprint"],
                                  "id_prefix": mix_info["id_prefix"], "ids": mix_info["cache_ids"]}]}

    report_tokens = list(cfg.report_tokens) + ([cfg.new_token] if cfg.new_token else [])
    schedule_box: dict[str, Any] = {}

    def on_model_ready(model_lm, inputs) -> list[Any]:
        callbacks: list[Any] = []
        if report_tokens:
            from .delia import token_loss_callback

            ids = {}
            for t in dict.fromkeys(report_tokens):
                tid = model_lm.tokenizer.convert_tokens_to_ids(t)
                if tid is None or tid == model_lm.tokenizer.unk_token_id:
                    from ..errors import ConfigError
                    raise ConfigError(f"token {t!r} is not in the vocabulary (add it with --new-token)")
                ids[t] = tid
            target = eval_records if eval_records is not None else records
            callbacks.append(token_loss_callback(model_lm, target, ids, out, max_length=cfg.max_length,
                                                 batch_size=cfg.score_batch_size,
                                                 split="eval" if eval_records is not None else "train"))
        if cfg.method == "iterit":
            fn = score_fn or ifd_score_fn(model_lm, records, batch_size=cfg.score_batch_size, progress=cfg.progress)
            tfidf = tfidf_matrix([r.output for r in records]) if cfg.score_type == "BOTH" else None
            schedule = IterITSchedule(len(records), fn, ratio=cfg.ratio, update_ratio=cfg.update_ratio,
                                      update_strategy=cfg.update_strategy, score_type=cfg.score_type, tfidf=tfidf,
                                      decay=cfg.diversity_weight_decay, ids=records.ids)
            schedule_box["schedule"] = schedule
            schedule_box["sampler"] = IterITSampler(schedule, cfg.seed)
            (out / ITERIT_LOG).unlink(missing_ok=True)
            callbacks.append(make_callback(schedule, log_path=out / ITERIT_LOG))
        return callbacks

    sampler_factory = None
    if cfg.method == "iterit":
        sampler_factory = lambda _ds: schedule_box["sampler"]  # noqa: E731

        def manifest() -> dict[str, Any]:  # noqa: F811 - built after training: the ids actually seen
            sched = schedule_box["schedule"]
            return {"iterit": {"k_per_epoch": sched.k, "rescore_window": sched.window,
                               "epochs": [{"epoch": h["epoch"], "ids": h["ids"], "scores": h["scores"]}
                                          for h in sched.history]},
                    "pool_ids": records.ids, "ids": [records[i].id for i in sched.seen()]}

    # IterIT's schedule and the token-loss report (before/after training) live outside the checkpoints
    result = run_sft(records, cfg, out_dir, lm=lm, sampler_factory=sampler_factory, manifest=manifest,
                     on_model_ready=on_model_ready, resumable=cfg.method != "iterit" and not report_tokens)
    if "schedule" in schedule_box:
        result.info["schedule"] = schedule_box["schedule"]
        result.info["sampler"] = schedule_box["sampler"]
    if mix_info is not None:
        result.info["delia"] = mix_info
    return result
