"""Convert recorded runs into the replay format (``budget-graph convert``).

Three sources: a Tree-of-Thoughts BFS log (:func:`convert_tot`; the value judges' texts
are rebuilt, see :mod:`budget_graph.replay._tot_judges`), a naive CoT / standard sample
log (:func:`convert_samples`) and Faithful-CoT predictions (:func:`convert_faithful_cot`).
:func:`convert_shipped` regenerates the shipped ``budget_graph/replay/data`` byte for byte
from the raw logs (``../shared/replay``).
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from budget_graph.replay.convert_io import (
    FCOT_REPO,
    PROMPT_NAMES,
    TOT_REPO,
    ConvertError,
    ask,
    load_json,
    load_prompts,
    load_puzzles,
    write_rows,
)
from budget_graph.replay.tot_logs import convert_tot
from budget_graph.replay.tot_logs import judged_final_states as judged_final_states

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

_TOT_LOG = "gpt-4_0.7_propose1_value3_greedy5_start900_end1000.json.gz"


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
    log = load_json(path)
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
                "messages": ask(prompts[kind].format(input=puzzles[idx])),
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
                    "messages": ask(f"{text}\n\n{tmpl.replace('[QUESTION]', q['question'])}"),
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
