"""Generated token ids -> answer text, keeping every token the answer is made of.

``skip_special_tokens=True`` drops every added token marked special, and so also a token a user
added to the vocabulary and trained (``datawinnow train --new-token <sep>``): evaluation would never
see it. Here only the *control* tokens are dropped: the tokenizer's named special tokens (BOS, EOS,
PAD, UNK, ... and its additional special tokens) and the added tokens the chat template writes
(``<|im_start|>``, ``<|eot_id|>``, ...); everything else is decoded as text.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

DECODE_RULE = "keep-added-tokens-v1"  # in generation cache keys: answers decoded by this rule


def _template_text(tokenizer: Any) -> str:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        return "\n".join(str(t) for t in template.values())
    return template or ""


def control_token_ids(tokenizer: Any) -> frozenset[int]:
    """Ids never shown in an answer: the named special tokens and the special tokens the chat template uses."""
    ids = {int(i) for i in tokenizer.all_special_ids if i is not None}
    template = _template_text(tokenizer)
    if template:
        for tid, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
            if getattr(added, "special", False) and added.content in template:
                ids.add(int(tid))
    return frozenset(ids)


def decode_generated(tokenizer: Any, rows: Iterable[Sequence[int]]) -> list[str]:
    """Each row of generated ids as text (whitespace-stripped), without control tokens (see module doc)."""
    control = control_token_ids(tokenizer)
    texts = []
    for row in rows:
        ids = [int(t) for t in (row.tolist() if hasattr(row, "tolist") else row)]
        texts.append(tokenizer.decode([t for t in ids if t not in control], skip_special_tokens=False).strip())
    return texts
