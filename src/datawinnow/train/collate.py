"""Turning records into trl's pre-tokenized prompt-completion rows.

Each record becomes ``input_ids`` (prompt tokens, then response tokens) and ``completion_mask``
(0 on every prompt token, 1 on every response token). The prompt is rendered through the model's
chat template by :class:`~datawinnow.data.prompts.PromptRenderer` (the same renderer the scorers
use, so what is trained is what was scored) and ends exactly where the assistant's reply starts;
the response is the record's output followed by the template's end-of-turn text (``<|im_end|>\\n``
for ChatML), so the model learns to stop. Prompt and response are tokenized separately and joined,
which makes the boundary exact whatever the tokenizer does, and truncated with
:func:`~datawinnow.backends.causal_lm.truncate_pair` (the response keeps at least half the window,
the prompt keeps its end). trl's ``SFTTrainer`` with ``completion_only_loss=True`` turns the mask
into labels (-100 on prompt tokens).

Multi-turn records train the last assistant turn; earlier turns are part of the prompt.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..backends.causal_lm import truncate_pair
from ..data.prompts import PromptRenderer
from ..data.record import Dataset, Record
from ..errors import DataError


def encode_record(tokenizer, renderer: PromptRenderer, record: Record, max_length: int,
                  end_of_turn: str | None = None) -> dict[str, list[int]]:
    """``{"input_ids", "completion_mask"}`` for one record (prompt masked, response + end of turn trained)."""
    if not record.output.strip():
        raise DataError(f"record '{record.id}' has an empty response; there is nothing to train on", field="output")
    eot = renderer.end_of_turn() if end_of_turn is None else end_of_turn
    prompt = tokenizer(renderer.prompt(record), add_special_tokens=False)["input_ids"]
    response = tokenizer(record.output + eot, add_special_tokens=False)["input_ids"]
    pair = truncate_pair(prompt, response, max_length)
    return {"input_ids": pair.prompt + pair.response,
            "completion_mask": [0] * len(pair.prompt) + [1] * len(pair.response)}


def encode_records(tokenizer, renderer: PromptRenderer, records: Sequence[Record], max_length: int) -> list[dict]:
    eot = renderer.end_of_turn()
    return [encode_record(tokenizer, renderer, r, max_length, eot) for r in records]


def to_hf_dataset(rows: list[dict[str, Any]]):
    """A :class:`datasets.Dataset` with ``input_ids`` and ``completion_mask`` columns (row order kept)."""
    import datasets

    return datasets.Dataset.from_dict({"input_ids": [r["input_ids"] for r in rows],
                                       "completion_mask": [r["completion_mask"] for r in rows]})


def check_trainable(dataset: Dataset) -> None:
    """Fail early, naming the record, when a record cannot be trained on."""
    if len(dataset) == 0:
        raise DataError("the training data is empty", path=dataset.path)
    for k, r in enumerate(dataset):
        if not r.output.strip():
            raise DataError(f"record '{r.id}' has an empty response; there is nothing to train on",
                            path=dataset.path, line=k + 1, field="output")
