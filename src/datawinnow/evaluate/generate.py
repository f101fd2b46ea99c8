"""Cached, resumable generation of answers for evaluation items.

Generations are stored like scores (:func:`datawinnow.runtime.runner.run_cached`): one store per
(model identity, generation parameters, prompt recipe), one row per item with the answer text, so a
second suite over the same items (ROUGE, then the judge rubric, then the win rate) reuses them and a
killed run resumes where it stopped.

Answers come from the local model (:func:`generate_cached`: prompts rendered with its chat template,
length-sorted batches) or from an OpenAI-compatible server (:func:`generate_remote_cached`: each
item's conversation sent as chat messages, ``concurrency`` requests in flight, retries); the server's
identity (URL and served model name) keys the cache then.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

from ..backends.decoding import DECODE_RULE
from ..data.record import Dataset, Record
from ..errors import ConfigError
from ..runtime.context import Context
from ..runtime.runner import Recipe, run_cached, sequential_plan


@dataclass(frozen=True)
class GenerationParams:
    """Decoding options; greedy (temperature 0) by default so evaluations are repeatable."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def validate(self) -> "GenerationParams":
        if self.max_new_tokens < 1:
            raise ConfigError(f"evaluate: --max-new-tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"evaluate: --temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"evaluate: --top-p must be in (0, 1], got {self.top_p}")
        return self

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def chat_prompt(lm, record: Record) -> str:
    """The plain prompt: the record's conversation without its answer, through the model's template."""
    return lm.renderer.prompt_for_messages(record.chat(with_response=False))


def local_generations(lm, params: GenerationParams, render: Callable[[Record], str]):
    """The batch computation of :func:`generate_cached`: ``lm``'s answers to the rendered prompts."""

    def compute(batch: list[Record]) -> list[dict[str, Any]]:
        texts = lm.generate([render(r) for r in batch], max_new_tokens=params.max_new_tokens,
                            temperature=params.temperature, top_p=params.top_p, seed=params.seed)
        return [{"text": t} for t in texts]

    return compute


def make_local_generations(ctx: Context, params: dict[str, Any], prompts: dict[str, str] | None = None):
    """:func:`local_generations` with ``ctx.model``, prompts from ``prompts`` (by item id) or
    :func:`chat_prompt` (the recipe a Ray worker rebuilds it from)."""
    lm = ctx.model
    render = (lambda r: prompts[r.id]) if prompts is not None else (lambda r: chat_prompt(lm, r))
    return local_generations(lm, GenerationParams(**params), render)


def generate_cached(lm, items: Dataset, *, params: GenerationParams, ctx: Context,
                    prompt_fn: Callable[[Record], str] | None = None, prompts: dict[str, str] | None = None,
                    recipe: dict[str, Any] | None = None, batch_size: int | None = None
                    ) -> tuple[list[str], dict[str, Any]]:
    """One answer per item (in order) and run info (computed, cached, seconds).

    The prompt text of an item: ``prompts[item.id]``, else ``prompt_fn(item)``, else :func:`chat_prompt`;
    ``recipe`` names what that prompt depends on besides the item (e.g. the ICL subset and k) and goes
    into the cache key. Without ``prompt_fn``, with ``lm`` the context's model, Ray workers (the
    context's executor) can generate too.
    """
    params.validate()
    if prompts is not None:
        render = lambda r: prompts[r.id]  # noqa: E731
    else:
        render = prompt_fn or (lambda r: chat_prompt(lm, r))
    bs = batch_size or ctx.batch_size

    def plan(todo: Sequence[Record]):
        if batch_size is None and ctx.batch_tokens is not None:  # a token budget: prompt and generated tokens
            lengths = [len(lm.prompt_ids(render(r))) + params.max_new_tokens for r in todo]
            return lm.plan(lengths, batch_tokens=ctx.batch_tokens)
        # similar prompt lengths together: less left padding; longest first so memory problems show at once
        order = sorted(range(len(todo)), key=lambda i: (-len(todo[i].prompt), i))
        return [order[k:k + bs] for k in range(0, len(order), bs)]

    portable = prompt_fn is None and ctx.model_loaded and ctx.model is lm
    key = {**params.as_dict(), "recipe": recipe or {"prompt": "chat"}, "system": lm.renderer.system,
           "decode": DECODE_RULE}
    rows, info = run_cached(items, scorer="generate", params=key, identity=lm.identity,
                            compute=local_generations(lm, params, render), plan=plan, ctx=ctx,
                            recipe=Recipe("datawinnow.evaluate.generate:make_local_generations",
                                          {"params": params.as_dict(), "prompts": prompts}) if portable else None)
    return [row["text"] for row in rows], info


def generate_remote_cached(generator, items: Dataset, *, params: GenerationParams, ctx: Context,
                           messages_fn: Callable[[Record], list[dict[str, str]]] | None = None,
                           recipe: dict[str, Any] | None = None) -> tuple[list[str], dict[str, Any]]:
    """One answer per item (in order) from a :class:`~datawinnow.backends.generator_remote.RemoteGenerator`.

    ``messages_fn`` builds an item's conversation (default: the record's own, without its answer);
    ``recipe`` names what it depends on besides the item, as for :func:`generate_cached`. Every request
    carries ``params.seed``. Items go out in batches of 4 x concurrency (at least the context's batch
    size), each stored when it finishes.
    """
    params.validate()
    build = messages_fn or (lambda r: r.chat(with_response=False))

    def compute(batch: list[Record]) -> list[dict[str, Any]]:
        texts = generator.answer([build(r) for r in batch], max_new_tokens=params.max_new_tokens,
                                 temperature=params.temperature, top_p=params.top_p, seeds=params.seed)
        return [{"text": t} for t in texts]

    key = {**params.as_dict(), "recipe": recipe or {"prompt": "chat"}, "system": generator.system}
    per_batch = max(ctx.batch_size, 4 * generator.concurrency)
    rows, info = run_cached(items, scorer="generate", params=key, identity=generator.identity, compute=compute,
                            plan=sequential_plan(per_batch), ctx=ctx)
    return [row["text"] for row in rows], info


class PromptTokenizer:
    """A model's tokenizer and prompt renderer without its weights: what counting prompt tokens needs
    (the ICL prompt budget) when a server, not the local model, generates."""

    def __init__(self, tokenizer, system: str | None = None):
        from ..data.prompts import PromptRenderer

        self.tokenizer = tokenizer
        self.renderer = PromptRenderer(tokenizer, system)

    @classmethod
    def load(cls, name: str | None, system: str | None = None) -> "PromptTokenizer":
        """The tokenizer of ``name`` (``smollm2``/None: the embedded model; a folder; a hub id; ``+ADAPTER`` ignored)."""
        import os

        from transformers import AutoTokenizer

        from ..backends.embedded import LM_ALIASES, set_offline, smollm2_dense_dir

        base = name.split("+", 1)[0] if name else name
        if base in LM_ALIASES:
            set_offline()
            path, local = str(smollm2_dense_dir()), True
        else:
            path, local = str(base), os.path.isdir(str(base))
        try:
            return cls(AutoTokenizer.from_pretrained(path, local_files_only=local), system)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot load the tokenizer of '{name}': {e}") from None

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]
