"""Convert the recorded runs in ``../shared/replay`` into budget_graph's replay format.

Run once from the repository root; the output is committed under
``budget_graph/replay/data/``::

    python scripts/convert_replay.py --source ../shared/replay

See ``docs/replay-format.md`` for the format and for how the Tree-of-Thoughts value
judges' texts (not logged by the original run) are reconstructed and calibrated.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import itertools
import json
import shutil
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

from budget_graph.accounting import count_messages, count_tokens

OUT = Path(__file__).resolve().parents[1] / "budget_graph" / "replay" / "data"
TOT_REPO = "princeton-nlp/tree-of-thought-llm"
FCOT_REPO = "veronica320/Faithful-COT"
VALUE_MAP = {"sure": 20.0, "likely": 1.0, "impossible": 0.001}
NO_LABEL_LINE = "I cannot decide whether 24 can be reached"
LIKELY_LINE = "I cannot obtain 24 now, but numbers are within a reasonable range"


def user(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


def write_jsonl_gz(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        for row in rows:
            gz.write((json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n").encode())
            n += 1
    return n


def load_prompts(src: Path) -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("prompts_game24", src / "prompts_game24.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    names = [
        "standard_prompt",
        "cot_prompt",
        "propose_prompt",
        "value_prompt",
        "value_last_step_prompt",
    ]
    return {n.removesuffix("_prompt"): getattr(mod, n) for n in names}


# --- Game of 24: the original run's prompt wrappers (src/tot/tasks/game24.py) -----------------


def current_numbers(y: str) -> str:
    return y.strip().split("\n")[-1].split("left: ")[-1].split(")")[0]


def propose_prompt(p: dict[str, str], x: str, y: str) -> str:
    cur = current_numbers(y if y else x)
    if cur == "24":
        return p["cot"].format(input=x) + "Steps:" + y
    return p["propose"].format(input=cur)


def value_prompt(p: dict[str, str], x: str, y: str) -> str:
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


# --- judge text reconstruction ----------------------------------------------------------------


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


# --- converters -------------------------------------------------------------------------------


def convert_tot(src: Path, prompts: dict[str, str]) -> Iterator[dict[str, Any]]:
    path = src / "gpt-4_0.7_propose1_value3_greedy5_start900_end1000.json.gz"
    log = json.load(gzip.open(path))
    provenance = {"repo": TOT_REPO, "file": f"logs/game24/{path.name.removesuffix('.gz')}"}
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
                        "request": {"messages": user(propose_prompt(prompts, x, parent)), "n": 1},
                        "completions": ["\n".join(lines)],
                    }
                )
            assert pos == len(new_ys), (idx, step["step"])
            local: set[str] = set()
            for y, v in zip(new_ys, values, strict=True):
                if y in local:
                    assert v == 0
                    continue
                local.add(y)
                prompt = value_prompt(prompts, x, y)
                if prompt in cache:
                    assert abs(cache[prompt] - v) < 1e-9
                    continue
                cache[prompt] = v
                rec = {
                    "kind": "value",
                    "step": step["step"],
                    "state": y,
                    "value": v,
                    "request": {"messages": user(prompt), "n": 3},
                    "completions": [],
                }
                records.append(rec)
                value_calls.append(rec)
        # Calibrate the value judges' text length on this puzzle's recorded completion tokens.
        used = puzzle["usage_so_far"]["completion_tokens"] - prev_completion
        prev_completion = puzzle["usage_so_far"]["completion_tokens"]
        propose_tokens = sum(
            count_tokens(r["completions"][0]) for r in records if r["kind"] == "propose"
        )
        _reconstruct_values(value_calls, used - propose_tokens, idx)
        for r in records:
            kind = r.pop("kind")
            meta = {k: r.pop(k) for k in ("step", "state", "value", "labels") if k in r}
            yield {
                "dataset": "game24_tot",
                "task": "game24",
                "item_id": idx,
                "kind": kind,
                "request": {**r.pop("request"), "temperature": 0.7, "max_tokens": 1000},
                "completions": r.pop("completions"),
                "gold": None,
                "model": "gpt-4",
                "provenance": {**provenance, "reconstructed": kind == "value"},
                "meta": meta,
            }


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


def _reconstruct_values(calls: list[dict[str, Any]], budget: int, key: str) -> None:
    intermediate: list[dict[str, Any]] = []
    for rec in calls:
        labels = decompose(rec["value"])
        state = rec["state"]
        four_line_rule = len(state.strip().split("\n")) == 4 and "answer" not in state.lower()
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


def convert_naive(src: Path, prompts: dict[str, str], kind: str) -> Iterator[dict[str, Any]]:
    path = src / f"gpt-4_0.7_naive_{kind}_sample_100_start900_end1000.json.gz"
    log = json.load(gzip.open(path))
    puzzles = _puzzles(src)
    for rec in log:
        idx = rec["idx"]
        flags = (
            [int(i["r"]) for i in rec["infos"]]
            if "infos" in rec
            else [int(bool(a)) for a in rec["accs"]]
        )
        yield {
            "dataset": f"game24_{kind}",
            "task": "game24",
            "item_id": str(idx),
            "kind": kind,
            "request": {
                "messages": user(prompts[kind].format(input=puzzles[idx])),
                "n": 100,
                "temperature": 0.7,
                "max_tokens": 1000,
            },
            "completions": rec["ys"],
            "gold": None,
            "model": "gpt-4",
            "provenance": {
                "repo": TOT_REPO,
                "file": f"logs/game24/{path.name.removesuffix('.gz')}",
                "reconstructed": False,
                "calls": "5 requests of n=20",
            },
            "meta": {"correct": flags},
        }


def _puzzles(src: Path) -> dict[int, str]:
    import csv

    with open(src / "24.csv", newline="") as f:
        return {i: row["Puzzles"] for i, row in enumerate(csv.DictReader(f))}


def convert_date(src: Path) -> Iterator[dict[str, Any]]:
    prompt = (src / "LtM_prompt.txt").read_text()
    template = (src / "LtM_template.txt").read_text()
    questions = {}
    for line in open(src / "faithfulcot_date_test.jsonl"):
        q = json.loads(line)
        questions[q["id"]] = q
    for line in gzip.open(src / "faithfulcot_date_code002_LtM_n40.jsonl.gz", "rt"):
        rec = json.loads(line)
        q = questions[rec["id"]]
        text = f"{prompt}\n\n{template.replace('[QUESTION]', q['question'])}"
        yield {
            "dataset": "date_ltm",
            "task": "date",
            "item_id": str(rec["id"]),
            "kind": "ltm",
            "request": {"messages": user(text), "n": 40, "temperature": 0.4, "max_tokens": 500},
            "completions": rec["completions"],
            "gold": q["answer"].removeprefix("####").strip(),
            "model": "code-davinci-002",
            "provenance": {
                "repo": FCOT_REPO,
                "file": "output_dir/date/test/code002_LtM_n:40",
                "reconstructed": False,
                "calls": "4 completion requests of n=10",
                "stop": ["Q:"],
            },
            "meta": {"majority_answer": rec["answer"]},
        }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--source", type=Path, default=Path("../shared/replay"))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    g24, date, out = args.source / "game24", args.source / "date", args.out
    prompts = load_prompts(g24)
    (out / "game24").mkdir(parents=True, exist_ok=True)
    (out / "date").mkdir(parents=True, exist_ok=True)
    (out / "game24" / "prompts.json").write_text(json.dumps(prompts, indent=1) + "\n")
    puzzles = _puzzles(g24)
    with open(out / "game24" / "items.jsonl", "w") as f:
        for i in range(900, 1000):
            f.write(json.dumps({"id": str(i), "input": puzzles[i]}) + "\n")
    shutil.copyfile(g24 / "LICENSE", out / "game24" / "LICENSE")
    shutil.copyfile(date / "LICENSE", out / "date" / "LICENSE")
    shutil.copyfile(date / "LtM_prompt.txt", out / "date" / "ltm_prompt.txt")
    shutil.copyfile(date / "LtM_template.txt", out / "date" / "ltm_template.txt")
    with open(out / "date" / "items.jsonl", "w") as f:
        for line in open(date / "faithfulcot_date_test.jsonl"):
            q = json.loads(line)
            gold = q["answer"].removeprefix("####").strip()
            f.write(json.dumps({"id": str(q["id"]), "input": q["question"], "gold": gold}) + "\n")
    for name, rows in [
        ("game24_cot", convert_naive(g24, prompts, "cot")),
        ("game24_standard", convert_naive(g24, prompts, "standard")),
        ("game24_tot", convert_tot(g24, prompts)),
        ("date_ltm", convert_date(date)),
    ]:
        rows = list(rows)
        n = write_jsonl_gz(out / "recordings" / f"{name}.jsonl.gz", rows)
        prompt_tokens = sum(count_messages(r["request"]["messages"]) for r in rows)
        completion_tokens = sum(count_tokens(c) for r in rows for c in r["completions"])
        print(
            f"{name}: {n} records, {sum(len(r['completions']) for r in rows)} completions, "
            f"prompt tokens/record-request {prompt_tokens}, completion tokens {completion_tokens}"
        )


if __name__ == "__main__":
    main()
