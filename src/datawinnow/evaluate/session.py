"""What every evaluation suite shares: the model, embedder and judge (loaded lazily), the decoding
options, the ICL examples, and cached generation and judging over a set of items."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from ..backends.decoding import DECODE_RULE
from ..cache import stable_hash
from ..data.record import Dataset, Record
from ..errors import ConfigError, DataError
from ..runtime.context import Context
from ..runtime.runner import run_cached, sequential_plan
from .generate import GenerationParams, PromptTokenizer, chat_prompt, generate_cached, generate_remote_cached

DEFAULT_DATA = "bundled:alpaca_eval_gpt4_baseline"


class EvalSession:
    """Shared state of one ``datawinnow evaluate`` run.

    ``ctx`` loads the model (with ``+ADAPTER``) and the embedder; ``judge_loader`` builds the judge on
    first use (a judge object may be passed directly as ``judge``); ``icl`` is an
    :class:`~datawinnow.evaluate.icl.ICLExamples` or None; ``max_new_tokens`` None lets each suite
    use its own default. ``generator``: a
    :class:`~datawinnow.backends.generator_remote.RemoteGenerator` that answers instead of the local
    model (the generation, rubric, winrate and ifeval suites); the local model is then loaded only by
    suites that score log-likelihoods, and ICL prompts count their tokens with the tokenizer of
    ``options["model"]`` alone.
    """

    def __init__(self, ctx: Context, *, gen: GenerationParams | None = None, max_new_tokens: int | None = None,
                 data: str | Dataset | None = None, judge: Any = None,
                 judge_loader: Callable[[], Any] | None = None, icl: Any = None, limit: int | None = None,
                 options: dict[str, Any] | None = None, generator: Any = None):
        self.ctx = ctx
        self.gen = gen or GenerationParams(seed=ctx.seed)
        self.max_new_tokens = max_new_tokens
        self.data = data if data is not None else DEFAULT_DATA
        self._judge, self._judge_loader = judge, judge_loader
        self.icl = icl
        if limit is not None and limit < 1:
            raise ConfigError(f"evaluate: --limit must be >= 1, got {limit}")
        self.limit = limit
        self.options = options or {}
        self.generator = generator
        self._reference: Dataset | None = None
        self._tokens: Any = None

    # ------------------------------------------------------------------ backends
    @property
    def lm(self):
        return self.ctx.model

    @property
    def embedder(self):
        return self.ctx.embedder

    @property
    def judge(self):
        if self._judge is None:
            if self._judge_loader is None:
                raise ConfigError("this suite needs a judge: pass --judge local (a causal LM) or --judge remote "
                                  "with an OpenAI-compatible endpoint (see 'datawinnow evaluate --help')")
            self._judge = self._judge_loader()
        return self._judge

    # ------------------------------------------------------------------ data
    def reference_items(self) -> Dataset:
        """The items with reference answers (``--data``; default the 805 AlpacaEval instructions)."""
        if self._reference is None:
            from ..data import load

            ds = self.data if isinstance(self.data, Dataset) else load(self.data)
            for k, r in enumerate(ds, 1):
                if not r.output.strip():
                    raise DataError("this evaluation needs a reference answer for every item", path=ds.path,
                                    line=k, field="output")
            self._reference = ds
        return self._reference

    def limited(self, ds: Dataset) -> Dataset:
        return ds[:self.limit] if self.limit else ds

    # ------------------------------------------------------------------ generation
    def params_for(self, default_max_new_tokens: int) -> GenerationParams:
        return replace(self.gen, max_new_tokens=self.max_new_tokens or default_max_new_tokens)

    def generate(self, items: Dataset, *, default_max_new_tokens: int = 256) -> tuple[list[str], list[list[str]] | None,
                                                                                      dict[str, Any]]:
        """(answers, ICL example ids per item or None, info) for ``items``; cached."""
        params = self.params_for(default_max_new_tokens)
        if self.generator is not None:
            texts, examples, info = self._generate_remote(items, params)
            return texts, examples, {**info, "generation": params.as_dict(), "generator": self.generator.identity,
                                     "generation_key": self.generation_key(params)}
        lm = self.lm
        if self.icl is None:
            texts, info = generate_cached(lm, items, params=params, ctx=self.ctx)
            examples = None
        else:
            built = dict(zip(items.ids, self.icl.prompts(lm, list(items))))
            texts, info = generate_cached(lm, items, params=params, ctx=self.ctx,
                                          prompts={i: built[i][0] for i in items.ids}, recipe=self.icl.identity)
            examples = [built[i][1] for i in items.ids]
        info = {**info, "generation": params.as_dict(),
                "generation_key": self.generation_key(params)}
        return texts, examples, info

    def _generate_remote(self, items: Dataset, params: GenerationParams):
        if self.icl is None:
            texts, info = generate_remote_cached(self.generator, items, params=params, ctx=self.ctx)
            return texts, None, info
        if self._tokens is None:  # the ICL prompt budget is counted in the model's tokens
            self._tokens = (self.ctx.model if self.ctx.model_loaded
                            else PromptTokenizer.load(self.options.get("model"), self.ctx.system))
        built = dict(zip(items.ids, self.icl.conversations(self._tokens, list(items))))
        texts, info = generate_remote_cached(self.generator, items, params=params, ctx=self.ctx,
                                             messages_fn=lambda r: built[r.id][0], recipe=self.icl.identity)
        return texts, [built[i][1] for i in items.ids], info

    def generation_key(self, params: GenerationParams) -> str:
        recipe = self.icl.identity if self.icl is not None else {"prompt": "chat"}
        if self.generator is not None:  # answers decoded by the server
            return stable_hash({"model": self.generator.identity, "gen": params.as_dict(), "recipe": recipe,
                                "system": self.generator.system})
        return stable_hash({"model": self.lm.identity, "gen": params.as_dict(), "recipe": recipe,
                            "system": self.lm.renderer.system, "decode": DECODE_RULE})

    def prompt_text(self, record: Record) -> str:
        return chat_prompt(self.lm, record)

    # ------------------------------------------------------------------ judging
    def judged(self, name: str, items: Dataset, answers: list[str], gen_key: str, params: dict[str, Any],
               compute: Callable[[list[Record], list[str]], list[dict]]) -> tuple[list[dict], dict]:
        """Judge rows per item, cached per (judge, generation key, params); ``compute(records, answers)``."""
        judge = self.judge
        answer_of = dict(zip(items.ids, answers))
        rows, info = run_cached(items, scorer=name, params={**params, "generation": gen_key},
                                identity=getattr(judge, "identity", type(judge).__name__),
                                compute=lambda batch: compute(batch, [answer_of[r.id] for r in batch]),
                                plan=sequential_plan(self.ctx.batch_size), ctx=self.ctx)
        return rows, info
