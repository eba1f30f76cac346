"""Argument checks of the ``budget-graph`` CLI: list parsing, path checks, runner options.

Standard library only, like :mod:`budget_graph.cli`, so ``--help`` stays instant. Bad
input raises :class:`UsageError`, which the CLI prints as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "FLAGS",
    "Parser",
    "UsageError",
    "add_convert_args",
    "add_serve_args",
    "check_file",
    "check_out_dir",
    "parse_budget_fractions",
    "parse_budget_tokens",
    "runner_kwargs",
    "split_list",
]


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def split_list(text: str, option: str) -> list[str]:
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise UsageError(f"{option} {text!r}: expected a comma-separated list")
    return parts


def parse_budget_tokens(text: str) -> list[int]:
    """``"4000,8000"`` -> ``[4000, 8000]``; each a whole number of tokens >= 1."""
    out = []
    for part in split_list(text, "--budget-tokens"):
        try:
            value = int(part.replace("_", ""))
        except ValueError:
            raise UsageError(
                f"invalid --budget-tokens entry {part!r}: expected a whole number of tokens"
            ) from None
        if value < 1:
            raise UsageError(f"invalid --budget-tokens entry {part!r}: must be >= 1")
        out.append(value)
    return out


def parse_budget_fractions(text: str) -> list[float]:
    """``"0.25,50%"`` -> ``[0.25, 0.5]``; each finite and > 0."""
    out = []
    for part in split_list(text, "--budget-fractions"):
        try:
            value = float(part[:-1]) / 100 if part.endswith("%") else float(part)
        except ValueError:
            raise UsageError(
                f"invalid --budget-fractions entry {part!r}: expected a number like 0.5 or 50%"
            ) from None
        if not math.isfinite(value) or value <= 0:
            raise UsageError(
                f"invalid --budget-fractions entry {part!r}: must be a finite number > 0"
            )
        out.append(value)
    return out


def check_out_dir(path: str, option: str = "--out") -> Path:
    """``path`` if it is (or can be created as) a writable directory."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{option} {path!r} exists and is not a directory")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {path!r}: {str(parent)!r} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path!r}: {str(parent)!r} is not writable")
    return out


def check_file(path: str, option: str) -> Path:
    """``path`` if it is a readable file."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{option}: no such file: {path!r}")
    if p.is_dir():
        raise UsageError(f"{option}: {path!r} is a directory, not a file")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{option}: {path!r} is not readable")
    return p


FLAGS = {
    "budget_tokens": "--budget-tokens",
    "budget_fractions": "--budget-fractions",
    "reference": "--reference",
    "recordings": "--recording",
    "items": "--items",
    "task": "--task",
}


def runner_kwargs(task: str, mod: Any, wanted: dict[str, Any]) -> dict[str, Any]:
    """The runner's keyword arguments; options it does not take are a usage error."""
    params = inspect.signature(mod.run).parameters
    wanted = {k: v for k, v in wanted.items() if v is not None}
    missing = [k for k in wanted if k not in params]
    if missing:
        raise UsageError(f"bench {task} does not take {', '.join(FLAGS[k] for k in missing)}")
    return wanted


def add_convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "format",
        choices=["tot", "cot", "faithful-cot", "shipped"],
        help="tot: a Tree-of-Thoughts BFS log; cot: a naive CoT/standard sample log; "
        "faithful-cot: Faithful-CoT predictions; shipped: regenerate the shipped "
        "recordings from a copy of the raw logs",
    )
    p.add_argument(
        "source",
        help="the log file (for shipped: the directory of raw logs, with game24/ and date/)",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output .jsonl/.jsonl.gz file (for shipped: the data directory)",
    )
    p.add_argument(
        "--prompts", help="tot/cot: the task's prompts module (prompts_game24.py) or a prompts.json"
    )
    p.add_argument("--puzzles", help="cot: the puzzles CSV (24.csv) the log's idx refers to")
    p.add_argument(
        "--kind",
        default="cot",
        choices=["cot", "standard"],
        help="cot: which prompt the samples answered (default: cot)",
    )
    p.add_argument("--questions", help="faithful-cot: the questions JSONL with gold answers")
    p.add_argument("--prompt", help="faithful-cot: the few-shot prompt text file")
    p.add_argument("--template", help="faithful-cot: the per-question template file")
    p.add_argument(
        "--dataset", help="dataset name written in the records (default: from the format)"
    )
    p.add_argument(
        "--final-states",
        choices=["rule", "judged", "auto"],
        default="rule",
        help="tot: replay four-step states as valued 0 by the depth rule (rule, "
        "default: how the shipped recording was made) or by the judge's logged "
        "values (judged); auto: judged if any has a nonzero logged value",
    )


def add_serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)"
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    p.add_argument(
        "--datasets",
        nargs="*",
        default=None,
        metavar="NAME",
        help="shipped recordings to serve (default: all)",
    )
    p.add_argument(
        "--seed", type=int, default=None, help="shuffle each request's completions with this seed"
    )
    p.add_argument(
        "--on-exhausted",
        choices=["cycle", "error"],
        default="cycle",
        help="when a request's recorded completions run out: start over "
        "(cycle, default) or answer an error",
    )
    p.add_argument(
        "--fault", default=None, help="fault for every request, e.g. '429', 'latency=0.2', 'drop=3'"
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
        help="server log level (default: info)",
    )
