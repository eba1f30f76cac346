"""Tree-of-Thoughts BFS logs into replay rows: a ``propose`` row per expansion, ``value`` rows.

Used by ``budget-graph convert tot`` (see :mod:`budget_graph.replay.convert`); the value
judges' texts are rebuilt by :mod:`budget_graph.replay._tot_judges`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from budget_graph.accounting import count_tokens
from budget_graph.replay._tot_judges import propose_prompt, reconstruct_values, value_prompt
from budget_graph.replay.convert_io import TOT_REPO, ConvertError, ask, load_json

__all__ = ["convert_tot", "judged_final_states"]


def _segment_len(new_ys: list[str], pos: int, parent: str) -> int:
    # A parent selected twice in one step: split its run of children at the first repeated line.
    seen: set[str] = set()
    n = 0
    while pos + n < len(new_ys) and new_ys[pos + n].startswith(parent):
        if new_ys[pos + n] in seen:
            break
        seen.add(new_ys[pos + n])
        n += 1
    return n


def _is_final(y: str) -> bool:
    return len(y.strip().split("\n")) == 4 and "answer" not in y.lower()


def judged_final_states(log: list[dict[str, Any]]) -> bool:
    """Whether a ToT log's judge scored four-step states (some have a nonzero value)."""
    return any(
        v and _is_final(y)
        for puzzle in log
        for step in puzzle.get("steps", ())
        for y, v in zip(step.get("new_ys", ()), step.get("values", ()), strict=False)
    )


def convert_tot(
    path: str | Path,
    prompts: dict[str, str],
    *,
    dataset: str = "game24_tot",
    final_states: Literal["auto", "rule", "judged"] = "rule",
    model: str = "gpt-4",
) -> Iterator[dict[str, Any]]:
    """Replay rows of a Tree-of-Thoughts BFS log.

    Replay rows of a ToT BFS log: one ``propose`` row per expansion, one ``value`` row per
    judged prompt (cached across the run as the original did).

    ``final_states``: ``"rule"`` (default, how the shipped recording was made) replays
    four-step states as valued 0 by the task's depth rule and labels their judges by
    arithmetic; ``"judged"`` keeps the judge's logged values for them (the rows say
    ``provenance.final_states = "judged"`` and the benchmark's task then values them by the
    judge, so the replayed selection follows the log); ``"auto"`` picks ``"judged"`` when any
    four-step state has a nonzero logged value.
    """
    path = Path(path)
    log = load_json(path)
    if not isinstance(log, list) or not all(isinstance(p, dict) and "steps" in p for p in log):
        raise ConvertError(f"{path}: not a ToT BFS log (expected a list of {{idx, steps}})")
    judged = judged_final_states(log) if final_states == "auto" else final_states == "judged"
    provenance: dict[str, Any] = {
        "repo": TOT_REPO,
        "file": f"logs/game24/{path.name.removesuffix('.gz')}",
    }
    if judged:
        provenance["final_states"] = "judged"
    cache: dict[str, float] = {}
    prev_completion = 0
    for puzzle in log:
        idx = str(puzzle["idx"])
        records: list[dict[str, Any]] = []
        value_calls: list[dict[str, Any]] = []
        for step in puzzle["steps"]:
            x, ys, new_ys, values = step["x"], step["ys"], step["new_ys"], step["values"]
            pos = 0
            for k, parent in enumerate(ys):  # children are consecutive, prefixed by the parent
                if parent in ys[k + 1 :]:
                    count = _segment_len(new_ys, pos, parent)
                else:
                    count = 0
                    while pos + count < len(new_ys) and new_ys[pos + count].startswith(parent):
                        count += 1
                children = new_ys[pos : pos + count]
                pos += count
                lines = [c[len(parent) : -1] for c in children]
                records.append(
                    {
                        "kind": "propose",
                        "step": step["step"],
                        "state": parent,
                        "request": {
                            "messages": ask(propose_prompt(prompts, x, parent)),
                            "n": 1,
                        },
                        "completions": ["\n".join(lines)],
                    }
                )
            if pos != len(new_ys):
                raise ConvertError(
                    f"{path}: puzzle {idx} step {step['step']}: children do "
                    "not follow their parents"
                )
            local: set[str] = set()
            for y, v in zip(new_ys, values, strict=True):
                if y in local:
                    continue
                local.add(y)
                prompt = value_prompt(prompts, x, y)
                if prompt in cache:
                    continue
                cache[prompt] = v
                rec = {
                    "kind": "value",
                    "step": step["step"],
                    "state": y,
                    "value": v,
                    "request": {"messages": ask(prompt), "n": 3},
                    "completions": [],
                }
                records.append(rec)
                value_calls.append(rec)
        # Calibrate the value judges' text length on this puzzle's recorded completion tokens.
        usage = puzzle.get("usage_so_far") or {}
        used = int(usage.get("completion_tokens", prev_completion)) - prev_completion
        prev_completion = int(usage.get("completion_tokens", prev_completion))
        propose_tokens = sum(
            count_tokens(r["completions"][0]) for r in records if r["kind"] == "propose"
        )
        budget = used - propose_tokens if usage else 46 * 3 * len(value_calls)
        reconstruct_values(value_calls, budget, idx, depth_rule=not judged)
        for r in records:
            kind = r.pop("kind")
            meta = {k: r.pop(k) for k in ("step", "state", "value", "labels") if k in r}
            yield {
                "dataset": dataset,
                "task": "game24",
                "item_id": idx,
                "kind": kind,
                "request": {**r.pop("request"), "temperature": 0.7, "max_tokens": 1000},
                "completions": r.pop("completions"),
                "gold": None,
                "model": model,
                "provenance": {**provenance, "reconstructed": kind == "value"},
                "meta": meta,
            }
