"""Rebuild the Tree-of-Thoughts value judges' texts, which the original run did not log.

The log keeps each candidate's summed value over 3 judge samples; :func:`decompose` turns it
into labels and :func:`judge_text` writes true arithmetic on the judged numbers ending in
each label, sized to the puzzle's recorded completion tokens (see docs/replay-format.md).
Used by :mod:`budget_graph.replay.convert`; the shipped recordings depend on every byte.
"""

from __future__ import annotations

import hashlib
import itertools
from fractions import Fraction
from typing import Any

from budget_graph.accounting import count_tokens

__all__ = [
    "LIKELY_LINE",
    "NO_LABEL_LINE",
    "current_numbers",
    "decompose",
    "judge_text",
    "last_step_judge_text",
    "propose_prompt",
    "reconstruct_values",
    "value_prompt",
]

NO_LABEL_LINE = "I cannot decide whether 24 can be reached"
LIKELY_LINE = "I cannot obtain 24 now, but numbers are within a reasonable range"


def current_numbers(y: str) -> str:
    """The numbers left after the last line of ``y``."""
    return y.strip().split("\n")[-1].split("left: ")[-1].split(")")[0]


def propose_prompt(p: dict[str, str], x: str, y: str) -> str:
    """The original run's propose prompt for state ``y`` of puzzle ``x``."""
    cur = current_numbers(y if y else x)
    if cur == "24":
        return p["cot"].format(input=x) + "Steps:" + y
    return p["propose"].format(input=cur)


def value_prompt(p: dict[str, str], x: str, y: str) -> str:
    """The original run's value prompt for state ``y`` of puzzle ``x``."""
    last = y.strip().split("\n")[-1]
    if "left: " not in last:
        return p["value_last_step"].format(input=x, answer=last.lower().replace("answer: ", ""))
    return p["value"].format(input=current_numbers(y))


def decompose(value: float) -> dict[str, int]:
    """Labels of three judge samples summing to ``value`` (sure=20, likely=1, impossible=0.001)."""
    total = round(value * 1000)
    impossible, rest = total % 1000, total // 1000
    sure, likely = divmod(rest, 20)
    none = 3 - sure - likely - impossible
    assert none >= 0, value
    return {"sure": sure, "likely": likely, "impossible": impossible, "none": none}


def _num(s: str) -> Fraction | None:
    try:
        return Fraction(s.strip("()"))
    except (ValueError, ZeroDivisionError):
        return None


def _fmt(v: Fraction) -> str:
    if v.denominator == 1:
        return str(v.numerator)
    return f"{float(v):.3g}" if abs(v) < 1000 else f"{float(v):.1f}"


def _lines_for(numbers: list[str]) -> list[tuple[str, Fraction]]:
    """True arithmetic lines over ``numbers`` in the style of the value prompt's examples."""
    vals = [(s, _num(s)) for s in numbers]
    if not vals or any(v is None for _, v in vals):
        return []
    out: list[tuple[str, Fraction]] = []
    seen: set[str] = set()

    def add(text: str, v: Fraction) -> None:
        if text not in seen:
            seen.add(text)
            out.append((text, v))

    if len(vals) == 1:
        ((s, v),) = vals
        add(f"{s} = {_fmt(v)}", v)  # type: ignore[arg-type]
        return out
    ops = ["+", "-", "*", "/"]
    for perm in itertools.permutations(vals):
        names = [s for s, _ in perm]
        nums = [v for _, v in perm]
        for o1 in ops:
            r1 = _apply(nums[0], o1, nums[1])  # type: ignore[arg-type]
            if r1 is None:
                continue
            if len(nums) == 2:
                add(f"{names[0]} {o1} {names[1]} = {_fmt(r1)}", r1)
                continue
            for o2 in ops:
                r2 = _apply(r1, o2, nums[2])  # type: ignore[arg-type]
                if r2 is None:
                    continue
                left = (
                    f"({names[0]} {o1} {names[1]})"
                    if o2 in "*/" and o1 in "+-"
                    else f"{names[0]} {o1} {names[1]}"
                )
                add(f"{left} {o2} {names[2]} = {_fmt(r1)} {o2} {names[2]} = {_fmt(r2)}", r2)
    return out


def _apply(a: Fraction, op: str, b: Fraction) -> Fraction | None:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b if b else None


def _rank(key: str, items: list[Any]) -> list[Any]:
    """A deterministic pseudo-random order of ``items`` seeded by ``key``."""
    return sorted(items, key=lambda t: hashlib.sha1(f"{key}|{t}".encode()).hexdigest())


def judge_text(numbers: str, label: str, target: int, key: str) -> str:
    """A judge completion for ``numbers`` ending in ``label`` with about ``target`` tokens."""
    pool = _lines_for(numbers.split())
    hits = [t for t, v in pool if v == 24]
    others = _rank(key, [t for t, v in pool if v != 24])
    body: list[str] = []
    if label == "sure" and hits:
        body.append(sorted(hits)[0])
    tail = {"likely": [LIKELY_LINE], "none": [NO_LABEL_LINE]}.get(label, [])
    last = [label] if label != "none" else []
    for line in others:
        candidate = "\n".join([*body, line, *tail, *last])
        if count_tokens(candidate) > target:
            break
        body.append(line)
    return "\n".join([*body, *tail, *last])


def last_step_judge_text(answer_line: str, label: str) -> str:
    """A judge completion for the final answer: the expression re-evaluated, then the label."""
    expr = answer_line.lower().replace("answer: ", "").strip()
    lines = [expr] if expr else []
    if label != "none":
        lines.append(label)
    else:
        lines.append(NO_LABEL_LINE)
    return "\n".join(lines)


def reconstruct_values(
    calls: list[dict[str, Any]], budget: int, key: str, *, depth_rule: bool = True
) -> None:
    """Write ``completions`` (and ``labels``) of a puzzle's value calls, ``budget`` tokens in all.

    With ``depth_rule`` (the log valued four-step states 0 whatever the judge said), those
    states are labelled by arithmetic; otherwise their logged value is decomposed as any other.
    """
    intermediate: list[dict[str, Any]] = []
    for rec in calls:
        labels = decompose(rec["value"])
        state = rec["state"]
        four_line_rule = (
            depth_rule and len(state.strip().split("\n")) == 4 and "answer" not in state.lower()
        )
        if four_line_rule:  # the run valued these 0 whatever the judge said; label by arithmetic
            nums = current_numbers(state)
            reached = _num(nums) == 24 if len(nums.split()) == 1 else False
            labels = {
                "sure": 0,
                "likely": 0,
                "impossible": 0,
                "none": 0,
                ("sure" if reached else "impossible"): 3,
            }
        rec["labels"] = labels
        seq = [lab for lab in ("sure", "likely", "impossible", "none") for _ in range(labels[lab])]
        rec["_seq"] = seq
        last = state.strip().split("\n")[-1]
        if "left: " not in last:
            rec["completions"] = [last_step_judge_text(last, lab) for lab in seq]
            budget -= sum(count_tokens(c) for c in rec["completions"])
        else:
            intermediate.append(rec)
    samples = sum(len(r["_seq"]) for r in intermediate)
    remaining, left = budget, samples
    # States with few numbers allow only short texts: size them first, the rest absorb the gap.
    intermediate.sort(key=lambda r: len(_lines_for(current_numbers(r["state"]).split())))
    for rec in intermediate:
        texts = []
        for i, lab in enumerate(rec["_seq"]):
            # The running target absorbs each text's rounding error, so the puzzle total matches.
            target = max(round(remaining / left), 1)
            text = judge_text(
                current_numbers(rec["state"]), lab, target, f"{key}|{rec['state']}|{i}"
            )
            remaining -= count_tokens(text)
            left -= 1
            texts.append(text)
        rec["completions"] = texts
    for rec in calls:
        rec.pop("_seq", None)
