"""Convert recorded runs into the replay format (``budget-graph convert``).

Three sources: a Tree-of-Thoughts BFS log (:func:`convert_tot`; the value judges' texts
are rebuilt, see :mod:`budget_graph.replay._tot_judges`), a naive CoT / standard sample
log (:func:`convert_samples`) and Faithful-CoT predictions (:func:`convert_faithful_cot`).
:func:`convert_shipped` regenerates the shipped ``budget_graph/replay/data`` byte for byte
from the raw logs (``../shared/replay``).
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from budget_graph.accounting import count_tokens
from budget_graph.replay._tot_judges import (
    propose_prompt,
    reconstruct_values,
    value_prompt,
)

__all__ = [
    "PROMPT_NAMES",
    "ConvertError",
    "convert_faithful_cot",
    "convert_samples",
    "convert_shipped",
    "convert_tot",
    "load_prompts",
    "load_puzzles",
    "main_from_args",
    "write_rows",
]

TOT_REPO = "princeton-nlp/tree-of-thought-llm"
FCOT_REPO = "veronica320/Faithful-COT"
PROMPT_NAMES = ("standard", "cot", "propose", "value", "value_last_step")
"""The prompt templates a Game of 24 log was made with."""
_TOT_LOG = "gpt-4_0.7_propose1_value3_greedy5_start900_end1000.json.gz"


class ConvertError(ValueError):
    """A log could not be converted; the message names the file and what is wrong."""


def _user(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


def _load_json(path: Path) -> Any:
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
    log = _load_json(path)
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
                        "request": {"messages": _user(propose_prompt(prompts, x, parent)), "n": 1},
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
                    "request": {"messages": _user(prompt), "n": 3},
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


def convert_samples(
    path: str | Path,
    prompts: dict[str, str],
    puzzles: dict[int, str],
    *,
    kind: str = "cot",
    dataset: str | None = None,
    model: str = "gpt-4",
) -> Iterator[dict[str, Any]]:
    """Replay rows of a naive CoT / standard sample log.

    Replay rows of a naive sample log (``{idx, ys, infos|accs}`` per puzzle): one row per
    puzzle holding its samples of the ``kind`` prompt, with the log's correctness flags.
    """
    path = Path(path)
    log = _load_json(path)
    if not isinstance(log, list) or not all(isinstance(r, dict) and "ys" in r for r in log):
        raise ConvertError(f"{path}: not a sample log (expected a list of {{idx, ys}})")
    if kind not in prompts:
        raise ConvertError(f"no {kind!r} prompt among {sorted(prompts)}")
    for rec in log:
        idx = rec["idx"]
        if idx not in puzzles:
            raise ConvertError(f"{path}: idx {idx} is not a row of the puzzles file")
        flags = (
            [int(i["r"]) for i in rec["infos"]]
            if "infos" in rec
            else [int(bool(a)) for a in rec.get("accs", ())]
        )
        yield {
            "dataset": dataset or f"game24_{kind}",
            "task": "game24",
            "item_id": str(idx),
            "kind": kind,
            "request": {
                "messages": _user(prompts[kind].format(input=puzzles[idx])),
                "n": 100,
                "temperature": 0.7,
                "max_tokens": 1000,
            },
            "completions": rec["ys"],
            "gold": None,
            "model": model,
            "provenance": {
                "repo": TOT_REPO,
                "file": f"logs/game24/{path.name.removesuffix('.gz')}",
                "reconstructed": False,
                "calls": "5 requests of n=20",
            },
            "meta": {"correct": flags},
        }


def _gold(answer: str) -> str:
    return answer.removeprefix("####").strip()


def convert_faithful_cot(
    path: str | Path,
    questions: str | Path,
    prompt: str | Path,
    template: str | Path,
    *,
    dataset: str = "date_ltm",
    task: str = "date",
    model: str = "code-davinci-002",
) -> Iterator[dict[str, Any]]:
    """Replay rows of Faithful-CoT predictions.

    Replay rows of Faithful-CoT predictions (``{id, answer, completions}`` per line), one
    per question, with the prompt built as that repository does and the gold answer.
    """
    text, tmpl = Path(prompt).read_text(), Path(template).read_text()
    qs: dict[Any, dict[str, Any]] = {}
    for line in open(questions, encoding="utf-8"):
        if line.strip():
            q = json.loads(line)
            qs[q["id"]] = q
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            if "completions" not in rec or rec.get("id") not in qs:
                raise ConvertError(
                    f"{path}: line {lineno}: needs 'completions' and an 'id' of the questions file"
                )
            q = qs[rec["id"]]
            yield {
                "dataset": dataset,
                "task": task,
                "item_id": str(rec["id"]),
                "kind": "ltm",
                "request": {
                    "messages": _user(f"{text}\n\n{tmpl.replace('[QUESTION]', q['question'])}"),
                    "n": 40,
                    "temperature": 0.4,
                    "max_tokens": 500,
                },
                "completions": rec["completions"],
                "gold": _gold(q["answer"]),
                "model": model,
                "provenance": {
                    "repo": FCOT_REPO,
                    "file": "output_dir/date/test/code002_LtM_n:40",
                    "reconstructed": False,
                    "calls": "4 completion requests of n=10",
                    "stop": ["Q:"],
                },
                "meta": {"majority_answer": rec.get("answer")},
            }


def convert_shipped(source: str | Path, out: str | Path) -> dict[str, int]:
    """Regenerate the shipped replay data in ``out`` from the raw logs in ``source``.

    Returns:
        Recording name -> number of records written.

    """
    g24, date, out = Path(source) / "game24", Path(source) / "date", Path(out)
    prompts = load_prompts(g24 / "prompts_game24.py")
    (out / "game24").mkdir(parents=True, exist_ok=True)
    (out / "date").mkdir(parents=True, exist_ok=True)
    (out / "game24" / "prompts.json").write_text(json.dumps(prompts, indent=1) + "\n")
    puzzles = load_puzzles(g24 / "24.csv")
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
            f.write(
                json.dumps({"id": str(q["id"]), "input": q["question"], "gold": _gold(q["answer"])})
                + "\n"
            )
    sample = "gpt-4_0.7_naive_{}_sample_100_start900_end1000.json.gz"
    jobs = [
        ("game24_cot", convert_samples(g24 / sample.format("cot"), prompts, puzzles, kind="cot")),
        (
            "game24_standard",
            convert_samples(g24 / sample.format("standard"), prompts, puzzles, kind="standard"),
        ),
        ("game24_tot", convert_tot(g24 / _TOT_LOG, prompts, final_states="rule")),
        (
            "date_ltm",
            convert_faithful_cot(
                date / "faithfulcot_date_code002_LtM_n40.jsonl.gz",
                date / "faithfulcot_date_test.jsonl",
                date / "LtM_prompt.txt",
                date / "LtM_template.txt",
            ),
        ),
    ]
    return {name: write_rows(out / "recordings" / f"{name}.jsonl.gz", rows) for name, rows in jobs}


def main_from_args(args: Any, usage_error: type[Exception]) -> int:
    """Run ``budget-graph convert`` on parsed arguments (see :mod:`budget_graph.cli`)."""

    def need(value: str | None, flag: str) -> Path:
        if not value:
            raise usage_error(f"convert {args.format} needs {flag}")
        if not Path(value).exists():
            raise usage_error(f"{flag}: no such file: {value!r}")
        return Path(value)

    src = Path(args.source)
    if not src.exists():
        raise usage_error(f"no such file or directory: {args.source!r}")
    try:
        if args.format == "shipped":
            if not (src / "game24").is_dir() or not (src / "date").is_dir():
                raise usage_error(f"{args.source!r} must hold the raw game24/ and date/ logs")
            counts = convert_shipped(src, args.out)
            print("\n".join(f"{k}: {v} records" for k, v in counts.items()))
            return 0
        if args.format == "tot":
            rows = convert_tot(
                src,
                load_prompts(need(args.prompts, "--prompts")),
                dataset=args.dataset or "game24_tot",
                final_states=args.final_states,
            )
        elif args.format == "cot":
            rows = convert_samples(
                src,
                load_prompts(need(args.prompts, "--prompts")),
                load_puzzles(need(args.puzzles, "--puzzles")),
                kind=args.kind,
                dataset=args.dataset,
            )
        else:
            rows = convert_faithful_cot(
                src,
                need(args.questions, "--questions"),
                need(args.prompt, "--prompt"),
                need(args.template, "--template"),
                dataset=args.dataset or "date_ltm",
            )
        n = write_rows(Path(args.out), rows)
    except ConvertError as exc:
        raise usage_error(str(exc)) from None
    print(f"wrote {n} records to {args.out}")
    return 0
