"""Rendering a record into (prompt text, response text) for a given tokenizer.

Models with a chat template are rendered through it; models without one get the Alpaca template.

**System prompt policy** (explicit, because SmolLM2's template injects "You are a helpful AI
assistant named SmolLM, trained by Hugging Face" whenever the conversation has no system turn):

- ``system=None`` (the default, ``--system default`` on the command line): the template's own
  behaviour. A record's own system turn is kept; otherwise the template may add its default
  persona (SmolLM2 does). Scores then reflect the prompt format the model is used with.
- ``system=""`` (``--system none``): an explicit empty system turn, so no persona text is added.
- ``system="TEXT"``: that text as the system turn (replacing a record's own).

The prompt ends exactly where the response starts (the assistant header included), found by
rendering a sentinel as the assistant's content, so any template works and the boundary is exact.

Prompts here are texts; the start token (BOS) is added when they are tokenized, by one rule for every
pass (:meth:`datawinnow.backends.causal_lm.CausalLM.prompt_ids`): a template-less model's Alpaca
prompt and its empty prompt both start with it.
"""

from __future__ import annotations

from typing import Sequence

from .record import Record

ALPACA_PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
_SENTINEL = "\u2063DATAWINNOW_RESPONSE\u2063"


class PromptRenderer:
    """Turns records into prompt/response texts for one tokenizer and one system-prompt policy."""

    def __init__(self, tokenizer, system: str | None = None):
        self.tokenizer = tokenizer
        self.system = system
        self.has_template = bool(getattr(tokenizer, "chat_template", None))

    def _with_system(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        if self.system is None:
            return messages
        rest = [m for m in messages if m["role"] != "system"]
        return [{"role": "system", "content": self.system}] + rest

    def _split_assistant(self, messages: list[dict[str, str]]) -> tuple[str, str]:
        """(text before the assistant's content, text after it) for a final assistant turn."""
        full = self.tokenizer.apply_chat_template(
            messages + [{"role": "assistant", "content": _SENTINEL}], tokenize=False
        )
        head, _, tail = full.partition(_SENTINEL)
        return head, tail

    def prompt(self, record: Record) -> str:
        """The prompt for ``record`` (everything before its response)."""
        if not self.has_template:
            return self.alpaca_prompt(record)
        return self._split_assistant(self._with_system(record.chat(with_response=False)))[0]

    def prompt_for_messages(self, messages: Sequence[dict[str, str]]) -> str:
        """The prompt for a conversation that the assistant answers next."""
        if not self.has_template:
            text = "\n\n".join(m["content"] for m in messages if m["role"] != "system")
            return ALPACA_PROMPT_NO_INPUT.format(instruction=text)
        return self._split_assistant(self._with_system(list(messages)))[0]

    def empty_prompt(self) -> str:
        """The chat template with only the assistant turn (IterIT's unconditioned prompt).

        Without a chat template there is no assistant turn to render: the empty text, which the backend
        turns into the start token alone (the same unconditioned pass as IFD's ``bare``).
        """
        if not self.has_template:
            return ""
        return self._split_assistant(self._with_system([]))[0]

    def end_of_turn(self) -> str:
        """What the template writes after an assistant reply (e.g. ``<|im_end|>\\n``); trained on in SFT."""
        if not self.has_template:
            return self.tokenizer.eos_token or ""
        return self._split_assistant(self._with_system([{"role": "user", "content": "x"}]))[1]

    @staticmethod
    def alpaca_prompt(record: Record) -> str:
        if record.input:
            return ALPACA_PROMPT.format(instruction=record.instruction, input=record.input)
        return ALPACA_PROMPT_NO_INPUT.format(instruction=record.instruction)
