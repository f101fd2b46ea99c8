"""``datawinnow train`` and ``datawinnow delia build-cache``: parsers and commands (registered by :mod:`datawinnow.cli`)."""

from __future__ import annotations

import argparse
import sys
import time

from ..cli_options import add_generate_options, add_runtime_options, generator_from_args, runtime_options_from_args
from ..runtime.describe import system_from_text
from ..train.config import METHODS, QUANTIZE, SCHEDULERS, SCORE_TYPES, UPDATE_STRATEGIES, TrainConfig

TRAIN_EPILOG = """examples:
  datawinnow train subset.jsonl --out adapters/subset             # LoRA SFT on the embedded SmolLM2
  datawinnow train bundled:alpaca_en_demo --method iterit --out adapters/iterit --epochs 3
  datawinnow delia build-cache queries.jsonl --out cache.jsonl
  datawinnow train task.jsonl --method delia --cache cache.jsonl --diverse-ratio 2 --out adapters/delia
  datawinnow score eval.jsonl --scorer ifd --model smollm2+adapters/subset --out s.jsonl   # use an adapter

The adapter folder holds the peft adapter, the tokenizer, datawinnow_train.json (config, versions,
metrics), data_manifest.json (ids and fingerprint of the data seen) and train_log.jsonl (the loss log).
Data sources: a file (.json/.jsonl/.csv/.parquet, optionally .gz), a save_to_disk folder, bundled:NAME, or a hub id."""


def add_train_parser(sub, formatter) -> None:
    d = TrainConfig()
    p = sub.add_parser("train", help="LoRA SFT on a data source (modes: sft, iterit, delia)", formatter_class=formatter,
                       epilog=TRAIN_EPILOG)
    p.add_argument("src", help="training data source (a subset file, bundled:NAME, ...)")
    p.add_argument("--out", required=True, help="adapter folder to write")
    p.add_argument("--method", default="sft", choices=METHODS,
                   help="sft: plain LoRA SFT; iterit: IterIT's iterative IFD selection each epoch; "
                        "delia: mix self-sampled cache answers into the data")
    p.add_argument("--columns", default=None, help="column map (JSON file or inline JSON) for the sources")
    g = p.add_argument_group("model")
    add_runtime_options(g, include=("model", "device", "dtype"), defaults={"model": d.model, "device": d.device,
                                                                          "dtype": d.dtype},
                        helps={"model": "causal LM: smollm2 (embedded SmolLM2-135M-Instruct), a folder, a hub id",
                               "dtype": "auto: bf16 on CUDA and on CPUs with AMX/AVX512-BF16 (trained with bf16 "
                                        "autocast), fp32 otherwise"})
    g.add_argument("--quantize", default=d.quantize, choices=QUANTIZE, help="4bit: QLoRA (needs CUDA and bitsandbytes)")
    add_runtime_options(g, include=("system",), helps={
        "system": "system prompt: 'default' (the chat template's own), 'none' (empty system turn), or a text"})
    g = p.add_argument_group("LoRA")
    g.add_argument("--rank", type=int, default=d.rank, help="LoRA rank r")
    g.add_argument("--alpha", type=int, default=d.alpha, help="LoRA alpha (scale alpha/r)")
    g.add_argument("--dropout", type=float, default=d.dropout, help="LoRA dropout")
    g.add_argument("--target-modules", default=d.target_modules,
                   help="all-linear, or comma-separated module names (e.g. q_proj,k_proj,v_proj,o_proj)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--lr", type=float, default=d.learning_rate, help="peak learning rate")
    g.add_argument("--scheduler", default=d.scheduler, choices=SCHEDULERS, help="learning-rate schedule")
    g.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio, help="linear warm-up, fraction of all steps")
    g.add_argument("--epochs", type=float, default=None, help="epochs (default: 1; 3 for iterit)")
    g.add_argument("--max-steps", type=int, default=d.max_steps, help="stop after this many optimizer steps (-1: by epochs)")
    add_runtime_options(g, include=("batch_size",), defaults={"batch_size": d.batch_size},
                        helps={"batch_size": "sequences per step (per device)"})
    g.add_argument("--grad-accum", type=int, default=d.grad_accum, help="gradient accumulation steps")
    add_runtime_options(g, include=("max_length",), defaults={"max_length": d.max_length}, helps={
        "max_length": "tokens per sequence; longer pairs keep the end of the prompt and the start of the response"})
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    add_runtime_options(g, include=("seed",), defaults={"seed": d.seed},
                        helps={"seed": "seed for LoRA init, data order, IterIT and DELIA draws"})
    g.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations (less memory, ~1/3 slower)")
    g.add_argument("--no-group-by-length", action="store_true", help="plain random batches instead of length-grouped ones")
    g.add_argument("--logging-steps", type=int, default=d.logging_steps, help="log the loss every N steps")
    g.add_argument("--save-steps", type=int, default=d.save_steps,
                   help="save a checkpoint every N optimizer steps into --out; rerunning the same command after a "
                        "crash resumes from the last one (0: no checkpoints; iterit and token-loss reports never resume)")
    g.add_argument("--no-resume", action="store_true", help="discard checkpoints left in --out and start over")
    add_runtime_options(g, include=("cache_dir", "quiet"))
    g = p.add_argument_group("iterit (--method iterit)")
    g.add_argument("--ratio", type=float, default=d.ratio, help="fraction of the pool trained on each epoch")
    g.add_argument("--update-ratio", type=float, default=d.update_ratio,
                   help="rescore the first ratio x n x update_ratio positions after each epoch (all if <= 1)")
    g.add_argument("--update-strategy", default=d.update_strategy, choices=UPDATE_STRATEGIES,
                   help="iterative: rescore between epochs; baseline: static epoch-0 IFD")
    g.add_argument("--score-type", default=d.score_type, choices=SCORE_TYPES,
                   help="IFD: top IFD; BOTH: IFD x TF-IDF diversity greedy over the responses")
    g.add_argument("--diversity-weight-decay", type=float, default=d.diversity_weight_decay,
                   help="BOTH: factor applied to the n-grams of each pick (0.1 general data, 0.0 domain data)")
    g.add_argument("--score-batch-size", type=int, default=d.score_batch_size, help="batch size of IFD scoring")
    g = p.add_argument_group("delia (--method delia) and new tokens")
    g.add_argument("--cache", default=None, help="DELIA cache (from 'datawinnow delia build-cache')")
    g.add_argument("--diverse-ratio", type=float, default=d.diverse_ratio,
                   help="mix int(len(SRC) x R) cache samples into SRC (the whole cache if smaller)")
    g.add_argument("--new-token", default=None,
                   help="add this token (e.g. '<sep>') with a random embedding, train its row, report its loss")
    g.add_argument("--report-token", action="append", default=[], metavar="TOKEN",
                   help="also report the per-token loss of this token before/after training (repeatable)")
    g.add_argument("--eval", default=None, help="data on which token losses are reported (default: the training data)")
    p.set_defaults(func=cmd_train)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        method=args.method, model=args.model, device=args.device, dtype=args.dtype, system=system_from_text(args.system),
        quantize=args.quantize, rank=args.rank, alpha=args.alpha, dropout=args.dropout,
        target_modules=args.target_modules, learning_rate=args.lr, scheduler=args.scheduler,
        warmup_ratio=args.warmup_ratio, epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size,
        grad_accum=args.grad_accum, max_length=args.max_length, weight_decay=args.weight_decay, seed=args.seed,
        gradient_checkpointing=args.gradient_checkpointing, group_by_length=not args.no_group_by_length,
        logging_steps=args.logging_steps, progress=not args.quiet, save_steps=args.save_steps,
        resume=not args.no_resume, ratio=args.ratio, update_ratio=args.update_ratio,
        update_strategy=args.update_strategy, score_type=args.score_type,
        diversity_weight_decay=args.diversity_weight_decay, score_batch_size=args.score_batch_size,
        cache=args.cache, diverse_ratio=args.diverse_ratio, new_token=args.new_token,
        report_tokens=list(args.report_token),
    ).validate()


def cmd_train(args: argparse.Namespace) -> int:
    from ..preflight import check_device_name, check_output_dir
    from ..train.runner import train

    check_device_name(args.device)
    cfg = config_from_args(args)
    check_output_dir(args.out)
    t0 = time.perf_counter()
    res = train(args.src, cfg, args.out, eval_source=args.eval, columns=args.columns)
    loss = res.metrics.get("train_loss")
    print(f"trained {cfg.method} on {len(res.seen_ids)} distinct samples in {time.perf_counter() - t0:.1f} s"
          f" (train loss {loss:.4f}) -> {res.out_dir}" if loss is not None else f"trained -> {res.out_dir}")
    return 0


def add_delia_parser(sub, formatter) -> None:
    p = sub.add_parser("delia", help="DELIA: build the cache of self-sampled answers", formatter_class=formatter)
    dsub = p.add_subparsers(dest="delia_command", metavar="ACTION", required=True)
    b = dsub.add_parser("build-cache", help="the model answers each query; chat messages JSONL, resumable",
                        formatter_class=formatter,
                        epilog="Queries: any data source; each record's prompt (instruction + input, or its "
                               "conversation without the last answer) is asked. A rerun resumes.")
    b.add_argument("queries", help="data source of queries (broad and diverse)")
    b.add_argument("--out", required=True, help="cache file (JSONL of {id, messages})")
    b.add_argument("--limit", type=int, default=None, help="only the first N queries")
    b.add_argument("--columns", default=None, help="column map (JSON file or inline JSON)")
    g = b.add_argument_group("model")
    add_runtime_options(g, include=("model", "adapter", "device", "dtype", "system"), helps={
        "model": "the model being tuned: smollm2, a folder, a hub id, or NAME+ADAPTER_DIR",
        "dtype": "auto: as for train", "system": "system prompt: 'default', 'none', or a text"})
    g = b.add_argument_group("sampling")
    g.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (0: greedy)")
    g.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling threshold")
    g.add_argument("--max-new-tokens", type=int, default=512, help="longest answer, in tokens")
    add_runtime_options(g, include=("batch_size", "seed"), defaults={"batch_size": 8}, helps={
        "batch_size": "queries generated together (grouped by prompt length)", "seed": "sampling seed"})
    add_runtime_options(b, include=("cache_dir", "quiet"), helps={"quiet": "no progress bar"}, grouped=False)
    add_generate_options(b, "the answers, instead of --model; --system applies to the messages sent")
    b.set_defaults(func=cmd_delia_build_cache)


def cmd_delia_build_cache(args: argparse.Namespace) -> int:
    from ..backends.causal_lm import CausalLM
    from ..data import load
    from ..train.delia import build_cache

    options = runtime_options_from_args(args)
    queries = load(args.queries, column_map=args.columns)
    if args.limit is not None:
        queries = queries[:args.limit]
    generator = generator_from_args(args, options.system)
    lm = None
    if generator is None:  # the local model answers
        lm = CausalLM.load(options.model, device=options.device, dtype=options.dtype, system=options.system)
    t0 = time.perf_counter()
    info = build_cache(queries, lm, args.out, batch_size=args.batch_size, temperature=args.temperature,
                       top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed, progress=not args.quiet,
                       generator=generator)
    print(f"delia cache: {info['written']} answers ({info['generated']} generated, {info['resumed']} resumed, "
          f"{info['empty']} empty) in {time.perf_counter() - t0:.1f} s -> {args.out}", file=sys.stdout)
    return 0
