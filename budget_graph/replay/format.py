"""The replay format: one JSON object per recorded request, in gzipped JSONL files.

See ``docs/replay-format.md`` for the field reference and the provenance of the shipped data.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage

from budget_graph.errors import BudgetError

__all__ = [
    "DATASETS",
    "ReplayError",
    "ReplayRecord",
    "data_dir",
    "load_records",
    "normalize_messages",
    "request_key",
    "write_records",
]


class ReplayError(BudgetError):
    """Root of the replay errors (also exported by ``budget_graph.replay.store``)."""


DATASETS: tuple[str, ...] = ("game24_cot", "game24_standard", "game24_tot", "date_ltm")
"""Names of the recordings shipped in ``budget_graph/replay/data/recordings``."""

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def data_dir() -> Path:
    """The directory of the shipped replay data (prompts, items, recordings, licenses)."""
    return Path(str(resources.files("budget_graph.replay") / "data"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayRecord:
    """One recorded request and the completions the model gave for it."""

    dataset: str
    """Recording it belongs to (e.g. ``"game24_tot"``)."""
    task: str
    """Task name (``"game24"``, ``"date"``)."""
    item_id: str
    """Problem id within the task (puzzle index ``"900"``..., question id)."""
    kind: str
    """Call kind: ``"cot"``, ``"standard"``, ``"propose"``, ``"value"``, ``"ltm"``."""
    request: Mapping[str, Any]
    """The request: ``messages`` (OpenAI chat dicts), plus the recorded ``n``, ``temperature``..."""
    completions: tuple[str, ...]
    """The recorded completion texts, in recorded order."""
    gold: str | None = None
    """Gold answer where the task has one."""
    model: str = "gpt-4"
    """The model that produced the completions."""
    provenance: Mapping[str, Any] = field(default_factory=dict)
    """Source repository and file; ``reconstructed`` is true where texts were rebuilt."""
    meta: Mapping[str, Any] = field(default_factory=dict)
    """Per-kind extras (ToT step, state and value; recorded correctness flags...)."""

    @property
    def messages(self) -> list[dict[str, str]]:
        """The request's chat messages."""
        return list(self.request["messages"])

    @property
    def key(self) -> str:
        """The lookup key of the request (its normalised messages)."""
        return request_key(self.messages)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ReplayRecord:
        """Build a record from one decoded JSON line."""
        return cls(
            dataset=obj["dataset"],
            task=obj["task"],
            item_id=str(obj["item_id"]),
            kind=obj["kind"],
            request=obj["request"],
            completions=tuple(obj["completions"]),
            gold=obj.get("gold"),
            model=obj.get("model", "gpt-4"),
            provenance=obj.get("provenance", {}),
            meta=obj.get("meta", {}),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this record."""
        return {
            "dataset": self.dataset,
            "task": self.task,
            "item_id": self.item_id,
            "kind": self.kind,
            "request": dict(self.request),
            "completions": list(self.completions),
            "gold": self.gold,
            "model": self.model,
            "provenance": dict(self.provenance),
            "meta": dict(self.meta),
        }


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = [
        b if isinstance(b, str) else b.get("text", "")
        for b in content or ()
        if isinstance(b, str) or isinstance(b, dict)
    ]
    return "".join(p for p in parts if isinstance(p, str))


def normalize_messages(
    messages: Sequence[BaseMessage | Mapping[str, Any]],
) -> list[dict[str, str]]:
    """Messages as ``{"role", "content"}`` dicts with text content (LangChain or OpenAI form)."""
    out: list[dict[str, str]] = []
    for msg in messages:
        if isinstance(msg, BaseMessage):
            out.append({"role": _ROLES.get(msg.type, msg.type), "content": _text(msg.content)})
        else:
            out.append(
                {"role": str(msg.get("role", "user")), "content": _text(msg.get("content", ""))}
            )
    return out


def request_key(messages: Sequence[BaseMessage | Mapping[str, Any]]) -> str:
    """The exact-match key of a request: its roles and texts, as canonical JSON."""
    norm = normalize_messages(messages)
    return json.dumps([[m["role"], m["content"]] for m in norm], ensure_ascii=False)


def _open(path: Path) -> Any:
    return (
        gzip.open(path, "rt", encoding="utf-8")
        if path.suffix == ".gz"
        else open(path, encoding="utf-8")
    )


def load_records(source: str | Path) -> Iterator[ReplayRecord]:
    """Records of a shipped dataset name (see ``DATASETS``) or of a JSONL(.gz) file path."""
    if isinstance(source, str) and source in DATASETS:
        path = data_dir() / "recordings" / f"{source}.jsonl.gz"
    else:
        path = Path(source)
    with _open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ReplayError(f"{path}: line {lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise ReplayError(f"{path}: line {lineno}: expected a JSON object, got {obj!r:.60}")
            try:
                yield ReplayRecord.from_json(obj)
            except KeyError as exc:
                raise ReplayError(
                    f"{path}: line {lineno}: missing required field {exc.args[0]!r}"
                ) from None


def write_records(path: str | Path, records: Iterable[ReplayRecord]) -> int:
    """Write records as JSONL (gzipped when the name ends in ``.gz``); returns the count."""
    path = Path(path)
    n = 0
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as f:  # type: ignore[operator]
        for rec in records:
            f.write(json.dumps(rec.to_json(), ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    return n
