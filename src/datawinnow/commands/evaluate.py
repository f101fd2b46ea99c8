"""``datawinnow evaluate``: the command line of the evaluation layer (registered by :mod:`datawinnow.cli`)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..cli_options import (EXECUTOR_FLAGS, JUDGE_FLAGS, MODEL_FLAGS, add_generate_options, add_runtime_options,
                           generator_from_args, judge_from_args, runtime_options_from_args)
from ..errors import ConfigError

EPILOG = """suites (--suite, repeatable; 'datawinnow evaluate --list' describes each):
  generation    ROUGE-1/2/L + embedding similarity against references (--data)
  rubric        8-dimension LLM-as-judge rubric, 1-5 each (--data, needs --judge)
  winrate       pairwise win rate vs reference outputs, both orders (--data, needs --judge)
  ifeval        IFEval, 541 prompts: prompt/instruction-level accuracy, strict and loose
  arc_easy, arc_challenge, mmlu   multiple choice by choice log-likelihood (acc, acc_norm)
  hellaswag     HellaSwag validation, 10,042: lm-eval preprocessing, 4 endings (acc, acc_norm)
  winogrande    WinoGrande-XL validation, 1,267: lm-eval partial scoring (acc)
  lm_eval       lm-evaluation-harness tasks (--lm-eval-task; hub access for its own tasks)

Testing a subset (DELIFT): --icl SUBSET (k nearest subset samples as in-context examples, no training)
or --adapter DIR (a LoRA adapter trained on the subset). Before anything runs, every evaluation item is
checked against the training data (the adapter's data_manifest.json, --train, the --icl subset);
contaminated items are left out unless --allow-contaminated.

examples:
  datawinnow evaluate --suite arc_easy --suite ifeval --limit 50 --out base.json
  datawinnow evaluate --adapter runs/ifd-10pct --suite generation --suite winrate --judge local --out ifd.json
  datawinnow evaluate --icl subset.jsonl --suite generation --limit 100 --out icl.json
  datawinnow evaluate --suite ifeval --generate-url http://localhost:8000/v1 --generate-model served-name --out v.json"""


def add_parser(sub, formatter) -> argparse.ArgumentParser:
    p = sub.add_parser("evaluate", help="evaluate a model (+ adapter or ICL subset) on evaluation suites",
                       formatter_class=formatter, epilog=EPILOG,
                       description="Evaluate a model, a model fine-tuned on a subset (--adapter), or a subset used "
                                   "as in-context examples (--icl); results as JSON with per-item records.")
    p.add_argument("--suite", action="append", metavar="NAME", default=None,
                   help="evaluation suite, repeatable (see below)")
    p.add_argument("--list", action="store_true", help="list the suites and exit")
    p.add_argument("--out", default=None, help="results JSON (summaries + per-item records); required unless --list")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N items of each suite (quick runs)")
    g = p.add_argument_group("data")
    g.add_argument("--data", default="bundled:alpaca_eval_gpt4_baseline",
                   help="items with reference answers for the generation, rubric and winrate suites (any data source)")
    g.add_argument("--columns", default=None, help="column map (JSON file or inline JSON) for --data, --train and --icl")
    g = p.add_argument_group("in-context evaluation of a subset")
    g.add_argument("--icl", default=None, metavar="SUBSET",
                   help="give each query its k nearest SUBSET samples (by embedding) as in-context examples")
    g.add_argument("--icl-k", type=int, default=5, help="in-context examples per query")
    g.add_argument("--icl-max-tokens", type=int, default=1024,
                   help="prompt budget in tokens; the farthest examples are dropped until the prompt fits")
    g = p.add_argument_group("contamination")
    g.add_argument("--train", action="append", default=None, metavar="SRC",
                   help="data the model was trained on, repeatable (default: the adapter's data_manifest.json)")
    g.add_argument("--allow-contaminated", action="store_true",
                   help="evaluate contaminated items too (flagged in the per-item records)")
    g.add_argument("--ngram", type=int, default=13, help="word n-gram size of the exact-overlap test")
    g.add_argument("--jaccard", type=float, default=0.8, help="MinHash Jaccard threshold of the near-duplicate test")
    g = p.add_argument_group("generation")
    g.add_argument("--max-new-tokens", type=int, default=None,
                   help="new tokens per answer (default: 256; 1024 for ifeval)")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (repeatable)")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling (with --temperature > 0)")
    add_generate_options(p, "answers of the generation, rubric, winrate and ifeval suites")
    g = p.add_argument_group("judge suites (rubric, winrate)")
    g.add_argument("--rubric-no-reference", action="store_true", help="do not show the reference answer to the rubric judge")
    g.add_argument("--judge-text", action="store_true",
                   help="win rate and rubric from the judge's reply text even when it can read token "
                        "probabilities (default then: expected digit / choice probabilities)")
    add_runtime_options(p, include=JUDGE_FLAGS)
    g = p.add_argument_group("multiple choice and lm-eval")
    g.add_argument("--mc-template", default="chat", choices=["chat", "plain"],
                   help="arc_easy, arc_challenge, mmlu: chat: question as the user turn, choice as the answer; plain: "
                        "'Question: ...\\nAnswer: choice' (hellaswag and winogrande always use lm-eval's plain prompts)")
    g.add_argument("--lm-eval-task", action="append", default=None, metavar="TASK", help="lm-eval task, repeatable")
    g.add_argument("--lm-eval-include", default=None, metavar="DIR", help="folder of extra lm-eval task YAML files")
    g.add_argument("--lm-eval-fewshot", type=int, default=None, help="few-shot examples (default: the task's)")
    g.add_argument("--lm-eval-chat", action="store_true", help="apply the chat template in lm-eval")
    add_runtime_options(p, include=MODEL_FLAGS + EXECUTOR_FLAGS)
    p.set_defaults(func=cmd_evaluate)
    return p


def _list_suites() -> int:
    from ..registry import SUITES

    print("evaluation suites (datawinnow evaluate --suite NAME):")
    for name, cls in SUITES.items():
        print(f"  {name:<15} {cls.description}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..data import load, load_column_map
    from ..evaluate.contamination import training_data_from_adapter
    from ..evaluate.generate import GenerationParams
    from ..evaluate.icl import ICLExamples
    from ..evaluate.results import summary_table, write_results
    from ..evaluate.runner import evaluate
    from ..evaluate.session import EvalSession
    from ..runtime.context import Context

    if args.list:
        return _list_suites()
    if not args.suite:
        raise ConfigError("evaluate: name at least one --suite (see 'datawinnow evaluate --list')")
    if not args.out:
        raise ConfigError("evaluate: --out results.json is required")
    run_options = runtime_options_from_args(args)
    model, _, adapter = (run_options.model or "").partition("+")
    model, adapter = model or None, adapter or None
    ctx = Context.from_options(run_options.replace(judge=None))  # suites load their judge themselves (_judge)
    columns = load_column_map(args.columns) if args.columns else None
    train = [load(src, column_map=columns) for src in (args.train or [])]
    if not train and adapter:
        from_manifest = training_data_from_adapter(adapter)
        if from_manifest is not None:
            train.append(from_manifest)
    icl = None
    if args.icl:
        subset = load(args.icl, column_map=columns)
        icl = ICLExamples(subset, ctx.embedder, k=args.icl_k, max_tokens=args.icl_max_tokens)
        train.append(subset)
    data = load(args.data, column_map=columns) if args.data else None
    gen = GenerationParams(temperature=args.temperature, top_p=args.top_p, seed=args.seed).validate()
    generator = generator_from_args(args, ctx.system)  # None: the local model answers
    options: dict[str, Any] = {
        "model": model, "adapter": adapter, "rubric_reference": not args.rubric_no_reference,
        "judge_probs": not args.judge_text, "mc_template": args.mc_template, "lm_eval_tasks": args.lm_eval_task,
        "lm_eval_include": args.lm_eval_include, "lm_eval_fewshot": args.lm_eval_fewshot,
        "lm_eval_chat": args.lm_eval_chat,
    }
    session = EvalSession(ctx, gen=gen, max_new_tokens=args.max_new_tokens, data=data,
                          judge_loader=lambda: _judge(args), icl=icl, limit=args.limit,
                          generator=generator, options=options)
    meta = {"model": model, "adapter": adapter, "icl": args.icl and {"subset": args.icl, "k": args.icl_k},
            "data": args.data, "train": [d.path for d in train],
            "generator": generator.identity if generator is not None else None}
    t0 = time.perf_counter()
    results = evaluate(args.suite, session, train=train, allow_contaminated=args.allow_contaminated,
                       ngram=args.ngram, jaccard=args.jaccard, meta=meta)
    results["model_identity"] = ctx.model_identity()
    results["seconds"] = round(time.perf_counter() - t0, 2)
    write_results(args.out, results)
    print(summary_table(results))
    print(f"\nevaluated {', '.join(results['suites'])} in {results['seconds']:.1f} s -> {args.out}")
    return 0


def _judge(args):
    judge = judge_from_args(args)
    if judge is None:
        raise ConfigError("this suite needs a judge: pass --judge local (a causal LM; --judge-model, default "
                          "--model) or --judge remote with --judge-url and --judge-model")
    return judge
