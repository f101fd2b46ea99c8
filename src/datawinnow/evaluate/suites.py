"""The evaluation suites behind ``datawinnow evaluate --suite NAME``.

A suite names its items (``items(session)``, before ``--limit`` and the contamination filter) and
turns them into ``{"summary", "items", "info"}`` (``run(items, session)``). Registered in
:data:`datawinnow.registry.SUITES`; a new suite is one class with ``@SUITES.register``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..data.record import Dataset
from ..registry import SUITES
from .session import EvalSession


class Suite:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs_judge: ClassVar[bool] = False
    checks_contamination: ClassVar[bool] = True   # False: the items are not known here (lm-eval loads its own)

    def items(self, session: EvalSession) -> Dataset:
        raise NotImplementedError

    def run(self, items: Dataset, session: EvalSession) -> dict[str, Any]:
        raise NotImplementedError


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _base_rows(items: Dataset, answers: list[str], examples: list[list[str]] | None) -> list[dict[str, Any]]:
    rows = []
    for k, r in enumerate(items):
        row: dict[str, Any] = {"id": r.id, "prompt": r.prompt, "answer": answers[k]}
        if r.output:
            row["reference"] = r.output
        if examples is not None:
            row["icl_examples"] = examples[k]
        rows.append(row)
    return rows


@SUITES.register
class GenerationSuite(Suite):
    name = "generation"
    description = "ROUGE-1/2/L and embedding cosine similarity of generated answers against references (--data)"

    def items(self, session):
        return session.reference_items()

    def run(self, items, session):
        from .metrics import embedding_similarity, rouge_scores

        answers, examples, info = session.generate(items)
        refs = [r.output for r in items]
        rouge = rouge_scores(answers, refs)
        sims = embedding_similarity(session.embedder, answers, refs)
        rows = _base_rows(items, answers, examples)
        for row, rs, s in zip(rows, rouge, sims):
            row.update(rs)
            row["similarity"] = float(s)
        summary = {"n": len(rows), **{k: _mean(r[k] for r in rows) for k in ("rouge1", "rouge2", "rougeL", "similarity")},
                   "answer_chars": _mean(len(a) for a in answers)}
        return {"summary": summary, "items": rows,
                "info": {**info, "embedder": getattr(session.embedder, "identity", None)}}


@SUITES.register
class RubricSuite(Suite):
    name = "rubric"
    description = ("LLM-as-judge: 8 dimensions (instruction following ... helpfulness), each 1-5 against anchored "
                   "levels, per dimension and mean (--data, --judge)")
    needs_judge = True

    def items(self, session):
        return session.reference_items()

    def run(self, items, session):
        from .rubric import judge_rubric, summarize_rubric

        from ..backends.judge import reads_probabilities
        from .rubric import judge_rubric_expected

        use_ref = bool(session.options.get("rubric_reference", True))
        answers, examples, info = session.generate(items)
        probs = reads_probabilities(session.judge) if session.options.get("judge_probs", True) else False
        judge_fn = judge_rubric_expected if probs else judge_rubric

        def compute(batch, batch_answers):
            return judge_fn(session.judge, [r.prompt for r in batch], batch_answers,
                            [r.output for r in batch] if use_ref else None)

        judged, jinfo = session.judged("rubric", items, answers, info["generation_key"],
                                       {"reference": use_ref, "version": 1,
                                        "readout": "expected-v2" if probs else "text"}, compute)
        rows = _base_rows(items, answers, examples)
        for row, j in zip(rows, judged):
            row.update({k: v for k, v in j.items() if k not in ("id", "_key")})
        return {"summary": summarize_rubric(judged), "items": rows,
                "info": {**info, "judge": getattr(session.judge, "identity", None), "judging": jinfo}}


@SUITES.register
class WinRateSuite(Suite):
    name = "winrate"
    description = ("pairwise win rate against the reference outputs (AlpacaEval style), both orders, with standard "
                   "error and a length-controlled variant (--data, default the 805 AlpacaEval instructions; --judge)")
    needs_judge = True

    def items(self, session):
        return session.reference_items()

    def run(self, items, session):
        from .winrate import judge_pairs, reads_probabilities, summarize_winrate

        answers, examples, info = session.generate(items)
        probs = reads_probabilities(session.judge) if session.options.get("judge_probs", True) else False

        def compute(batch, batch_answers):
            return judge_pairs(session.judge, [r.prompt for r in batch], batch_answers, [r.output for r in batch],
                               use_probs=probs)

        judged, jinfo = session.judged("winrate", items, answers, info["generation_key"],
                                       {"probs": probs, "version": 1}, compute)
        rows = _base_rows(items, answers, examples)
        for row, j in zip(rows, judged):
            row.update({k: v for k, v in j.items() if k not in ("id", "_key")})
        summary = summarize_winrate(judged, [len(a) for a in answers], [len(r.output) for r in items])
        return {"summary": summary, "items": rows,
                "info": {**info, "judge": getattr(session.judge, "identity", None), "verdicts_from":
                         "token probabilities" if probs else "reply text", "judging": jinfo}}


@SUITES.register
class IFEvalSuite(Suite):
    name = "ifeval"
    description = "IFEval, the 541 bundled prompts: prompt- and instruction-level accuracy, strict and loose"
    default_max_new_tokens = 1024

    def items(self, session):
        from .ifeval import load_items

        return load_items()

    def run(self, items, session):
        from .ifeval import summarize_ifeval
        from .ifeval.score import check_record

        answers, examples, info = session.generate(items, default_max_new_tokens=self.default_max_new_tokens)
        rows = _base_rows(items, answers, examples)
        checks = [check_record(r, a) for r, a in zip(items, answers)]
        for row, c in zip(rows, checks):
            row.update(c)
        return {"summary": summarize_ifeval(checks), "items": rows,
                "info": {**info, "sentence_splitter": "punkt (untrained) + abbreviation list; see docs/evaluation.md"}}


class _MultipleChoice(Suite):
    task: ClassVar[str] = ""

    def items(self, session):
        from .multiple_choice import load_task

        return load_task(self.task)

    def run(self, items, session):
        from .multiple_choice import score_choices, summarize_mc

        template = session.options.get("mc_template", "chat")
        rows, info = score_choices(session.lm, items, template=template, ctx=session.ctx)
        info = {**info, "template": template}
        if session.icl is not None:
            info["icl"] = "not applied: multiple choice scores the model alone"
        return {"summary": summarize_mc(rows), "items": rows, "info": info}


@SUITES.register
class ArcEasySuite(_MultipleChoice):
    name = "arc_easy"
    task = "arc_easy"
    description = "ARC-Easy validation (570): choice log-likelihood, raw and length-normalised accuracy"


@SUITES.register
class ArcChallengeSuite(_MultipleChoice):
    name = "arc_challenge"
    task = "arc_challenge"
    description = "ARC-Challenge validation (299): choice log-likelihood, raw and length-normalised accuracy"


@SUITES.register
class MMLUSuite(_MultipleChoice):
    name = "mmlu"
    task = "mmlu"
    description = "MMLU validation (1,531, 57 subjects): choice log-likelihood, raw and length-normalised accuracy"


@SUITES.register
class LmEvalSuite(Suite):
    name = "lm_eval"
    description = ("lm-evaluation-harness tasks (--lm-eval-task, repeatable) on the same model and adapter; "
                   "needs hub access for lm-eval's own tasks")
    checks_contamination = False

    def items(self, session):
        return Dataset([])

    def run(self, items, session):
        from .lm_eval_adapter import run_lm_eval

        o = session.options
        model = session.options.get("model")
        out = run_lm_eval(model, o.get("lm_eval_tasks") or [], adapter=o.get("adapter"),
                          num_fewshot=o.get("lm_eval_fewshot"), limit=session.limit,
                          batch_size=session.ctx.batch_size, device=session.ctx.device, dtype=session.ctx.dtype,
                          include_path=o.get("lm_eval_include"), apply_chat_template=bool(o.get("lm_eval_chat")),
                          seed=session.ctx.seed, quiet=not session.ctx.progress)
        summary = {f"{task}/{metric}": v for task, metrics in out["summary"].items() for metric, v in metrics.items()}
        return {"summary": summary, "items": [], "info": {"n": out["n"], **out["config"],
                                                         "contamination": "not checked (lm-eval loads its own data)"}}
