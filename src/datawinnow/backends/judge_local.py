"""A judge backed by a local causal LM (any model the model backend loads).

- :meth:`LocalJudge.choice_probs`: the next-token distribution after the rendered prompt (the first
  generated position), restricted to the choice tokens and renormalised (DEITA's read-out). Each
  choice must be one token of the tokenizer's vocabulary; a missing one is an error (DEITA silently
  returns 3.0 then; datawinnow does not).
- :meth:`LocalJudge.chat`: greedy (or sampled) generation.

Prompts longer than ``max_length`` tokens lose their middle (the rubric at the start and the
question at the end are what the read-out depends on).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ConfigError
from .causal_lm import CausalLM
from .judge import Judge, JudgeError, Messages

TEMPLATES = ("chat", "raw")


class LocalJudge(Judge):
    """Judge with a :class:`CausalLM`; ``template`` ``chat`` renders through the chat template, ``raw`` uses the text."""

    def __init__(self, lm: CausalLM, *, template: str = "chat", max_length: int | None = None, batch_size: int = 8,
                 batch_tokens: int | str | None = None):
        if template not in TEMPLATES:
            raise ConfigError(f"judge template must be one of {', '.join(TEMPLATES)}, got '{template}'")
        self.lm = lm
        self.template = template
        self.max_length = max_length or max(lm.max_length, 1024)
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens  # a token budget per forward pass (None: batch_size prompts)
        self.identity = f"local:{lm.identity}|{template}|{self.max_length}"
        self._choice_ids: dict[tuple[str, ...], list[int]] = {}

    @classmethod
    def load(cls, model: Any = None, *, template: str = "chat", device: str = "auto", dtype: str = "auto",
             max_length: int = 1024, batch_size: int = 8, batch_tokens: int | str | None = None) -> "LocalJudge":
        lm = model if isinstance(model, CausalLM) else CausalLM.load(model, device=device, dtype=dtype,
                                                                     max_length=max_length)
        return cls(lm, template=template, max_length=max_length, batch_size=batch_size, batch_tokens=batch_tokens)

    # ------------------------------------------------------------------ prompts
    def render(self, conversation: Messages) -> str:
        """The prompt text the model continues."""
        tok = self.lm.tokenizer
        if self.template == "raw":
            text = "\n\n".join(m["content"] for m in conversation if m["role"] != "assistant" or m["content"])
            return (tok.bos_token or "") + text
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)
        return self.lm.renderer.prompt_for_messages(list(conversation))

    def prompt_ids(self, conversation: Messages) -> list[int]:
        ids = self.lm.encode(self.render(conversation))
        if len(ids) > self.max_length:  # keep the head (instructions) and the tail (the question), drop the middle
            head = self.max_length // 2
            ids = ids[:head] + ids[len(ids) - (self.max_length - head):]
        return ids

    def choice_token_ids(self, choices: Sequence[str]) -> list[int]:
        """One vocabulary id per choice string; a choice that is not a single token is an error."""
        key = tuple(choices)
        if key not in self._choice_ids:
            tok = self.lm.tokenizer
            vocab = tok.get_vocab()
            ids = []
            for c in choices:
                if c in vocab:
                    ids.append(vocab[c])
                    continue
                enc = self.lm.encode(c)
                if len(enc) != 1:
                    raise JudgeError(f"judge {self.lm.identity}: the choice {c!r} is not a single token of its "
                                     f"tokenizer (it encodes to {len(enc)} tokens), so its probability cannot be read")
                ids.append(enc[0])
            if len(set(ids)) != len(ids):
                raise JudgeError(f"judge {self.lm.identity}: choices {list(choices)} do not map to distinct tokens")
            self._choice_ids[key] = ids
        return self._choice_ids[key]

    # ------------------------------------------------------------------ the interface
    def choice_probs(self, conversations: Sequence[Messages], choices: Sequence[str]) -> np.ndarray:
        if not choices:
            raise ConfigError("choice_probs needs at least one choice")
        ids = self.choice_token_ids(choices)
        prompts = [self.prompt_ids(c) for c in conversations]
        out = np.zeros((len(prompts), len(ids)), dtype=np.float64)
        sel = torch.tensor(ids)
        for idx in self.lm.plan([len(p) for p in prompts], batch_size=self.batch_size, batch_tokens=self.batch_tokens):
            logp = self.lm.next_token_logprobs([prompts[i] for i in idx])[:, sel].double()
            probs = torch.softmax(logp, dim=-1).numpy()  # renormalised over the choices
            if not np.isfinite(probs).all():
                raise JudgeError(f"judge {self.lm.identity}: non-finite choice probabilities")
            out[idx] = probs
        return out

    def chat(self, conversations: Sequence[Messages], *, max_tokens: int = 256, temperature: float = 0.0) -> list[str]:
        texts = [self.render(c) for c in conversations]
        prompts = [self.prompt_ids(c) for c in conversations]
        for i, (t, p) in enumerate(zip(texts, prompts)):
            if len(p) >= self.max_length:  # shortened: generate from the kept tokens
                texts[i] = self.lm.tokenizer.decode(p, skip_special_tokens=False)
        out: list[str] = [""] * len(texts)
        lengths = [len(p) + max_tokens for p in prompts]  # the KV cache grows by the generated tokens
        for idx in self.lm.plan(lengths, batch_size=self.batch_size, batch_tokens=self.batch_tokens):
            replies = self.lm.generate([texts[i] for i in idx], max_new_tokens=max_tokens, temperature=temperature)
            for i, r in zip(idx, replies):
                out[i] = r
        return out
