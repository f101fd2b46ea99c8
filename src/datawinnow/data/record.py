"""The one record type every source is read into, and the pool that holds them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

ROLES = ("system", "user", "assistant")


@dataclass
class Record:
    """One instruction-tuning sample.

    Single-turn data fills ``instruction``, ``input`` (may be empty) and ``output``.
    Multi-turn data also keeps ``messages`` (``[{"role", "content"}, ...]``); then
    ``instruction`` is the last user turn and ``output`` the last assistant turn, so
    single-turn scorers work on every record.
    """

    id: str
    instruction: str
    input: str = ""
    output: str = ""
    messages: list[dict[str, str]] | None = None
    source: str | None = None
    task: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        """The user's request as one text: instruction, then the input after a blank line."""
        return f"{self.instruction}\n\n{self.input}" if self.input else self.instruction

    def chat(self, with_response: bool = True) -> list[dict[str, str]]:
        """The record as chat messages, ending with the assistant turn unless ``with_response`` is false."""
        if self.messages:
            msgs = [dict(m) for m in self.messages]
            if msgs and msgs[-1]["role"] == "assistant" and not with_response:
                msgs = msgs[:-1]
            return msgs
        msgs = [{"role": "user", "content": self.prompt}]
        if with_response:
            msgs.append({"role": "assistant", "content": self.output})
        return msgs

    def content_key(self) -> str:
        """Hash of the content (not the id): equal content gives equal keys across runs."""
        payload = json.dumps(
            [self.instruction, self.input, self.output, self.messages], ensure_ascii=False, sort_keys=True
        )
        return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "instruction": self.instruction, "input": self.input, "output": self.output}
        if self.messages is not None:
            out["messages"] = self.messages
        if self.source is not None:
            out["source"] = self.source
        if self.task is not None:
            out["task"] = self.task
        if self.meta:
            out["meta"] = self.meta
        return out


class Dataset(Sequence[Record]):
    """An ordered pool of records with unique ids, plus where it came from.

    ``format`` is the format it was read in (so a subset can be written back in it) and
    ``path`` the source it was read from.
    """

    def __init__(self, records: Iterable[Record], *, format: str = "alpaca", path: str | None = None):
        self.records = list(records)
        self.format = format
        self.path = path
        self._index: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return Dataset(self.records[i], format=self.format, path=self.path)
        return self.records[i]

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __repr__(self) -> str:
        return f"Dataset({len(self)} records, format={self.format!r}, path={self.path!r})"

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def index_of(self, record_id: str) -> int:
        if self._index is None:
            self._index = {r.id: i for i, r in enumerate(self.records)}
        return self._index[record_id]

    def subset(self, ids: Iterable[str]) -> "Dataset":
        """The records with these ids, in the given order."""
        return Dataset([self.records[self.index_of(i)] for i in ids], format=self.format, path=self.path)

    def fingerprint(self) -> str:
        """A hash of every record's id and content, for manifests and cache keys."""
        h = hashlib.sha1()
        for r in self.records:
            h.update(r.id.encode("utf-8"))
            h.update(b"\0")
            h.update(r.content_key().encode("ascii"))
        return h.hexdigest()[:16]


class IdAssigner:
    """The id rules of :func:`assign_ids`, one record at a time (for readers that stream).

    Keeps one dict entry per distinct id seen (the only per-record state of a streamed read).
    """

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}  # base id -> (times seen << 1) | (seen as a record's own id)

    def __call__(self, r: Record) -> bool:
        """Give ``r`` its final id; returns whether its own (non-empty) id repeats one a record had earlier."""
        own = bool(r.id)
        if not own:
            r.id = r.content_key()
        base = r.id
        code = self._seen.get(base, 0)
        n = (code >> 1) + 1
        self._seen[base] = (n << 1) | (code & 1) | own
        if n > 1:
            r.id = f"{base}~{n}"
        return own and bool(code & 1)


def assign_ids(records: list[Record]) -> list[Record]:
    """Give records without an id a content-hash id; make repeated ids unique (``ID~2``, ``ID~3``, ...).

    Both rules depend only on the content and the order, so ids are stable across runs.
    """
    assign = IdAssigner()
    for r in records:
        assign(r)
    return records
