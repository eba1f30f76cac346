"""Reading logs and writing replay rows for ``budget-graph convert``: loaders, writer, errors."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "FCOT_REPO",
    "PROMPT_NAMES",
    "TOT_REPO",
    "ConvertError",
    "load_json",
    "load_prompts",
    "load_puzzles",
    "ask",
    "write_rows",
]


TOT_REPO = "princeton-nlp/tree-of-thought-llm"
FCOT_REPO = "veronica320/Faithful-COT"
PROMPT_NAMES = ("standard", "cot", "propose", "value", "value_last_step")
"""The prompt templates a Game of 24 log was made with."""


class ConvertError(ValueError):
    """A log could not be converted; the message names the file and what is wrong."""


def ask(content: str) -> list[dict[str, str]]:
    """A one-message chat request: the user's ``content``."""
    return [{"role": "user", "content": content}]


def load_json(path: Path) -> Any:
    """A JSON log (gzipped when its name ends in .gz); unreadable -> :class:`ConvertError`."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
            return json.load(f)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConvertError(f"{path}: not a JSON log ({exc})".splitlines()[0]) from None


def write_rows(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write replay rows as JSONL (gzipped, with a zero mtime, when the name ends in .gz)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    if path.suffix == ".gz":
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            for row in rows:
                gz.write((json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n").encode())
                n += 1
        return n
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    return n


def load_prompts(path: str | Path) -> dict[str, str]:
    """Prompt templates from a ``prompts_game24.py``-style module or a ``prompts.json``."""
    path = Path(path)
    if path.suffix == ".json":
        prompts = json.loads(path.read_text())
        return {n: prompts[n] for n in PROMPT_NAMES if n in prompts}
    spec = importlib.util.spec_from_file_location("_bg_prompts", path)
    if spec is None or spec.loader is None:
        raise ConvertError(f"{path}: not a Python prompts module")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return {n: getattr(mod, f"{n}_prompt") for n in PROMPT_NAMES if hasattr(mod, f"{n}_prompt")}


def load_puzzles(path: str | Path) -> dict[int, str]:
    """Row index -> puzzle from a ``24.csv`` (``Puzzles`` column)."""
    with open(path, newline="") as f:
        return {i: row["Puzzles"] for i, row in enumerate(csv.DictReader(f))}
