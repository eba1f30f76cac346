"""Bad input everywhere a user hands us something: a clear error naming the field and the
value, or a documented fallback, and no half-written result file.

``CASES`` is also what ``scripts/bad_input_table.py`` runs to write the table in
``docs/reliability.md``; ``test_docs_table_is_current`` keeps the two in step.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import FakeListChatModel

from budget_graph import Budget, Meter, RetryPolicy, budgeted, guard, with_budget
from budget_graph.nodes.estimator import TaleEstimator, parse_token_budget
from budget_graph.nodes.tree import TreeNode
from budget_graph.nodes.value import JudgeValue
from budget_graph.replay import ReplayStore
from budget_graph.replay.faults import Fault, parse_fault
from budget_graph.tasks.base import Item
from budget_graph.tasks.game24 import Game24Task

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reliability.md"
TMP = Path("/tmp/budget_graph_bad_input")


@dataclass(frozen=True)
class Case:
    """One bad input: where it goes, what it is, and what the user must see."""

    area: str
    given: str
    run: Callable[[], Any]
    expect: tuple[str, ...]
    """Substrings of what the user sees (error type + message, or the fallback value)."""


def _cli(*argv: str) -> Any:
    from budget_graph.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code
    lines = [ln for ln in err.getvalue().strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else ""
    if isinstance(code, str):
        text, code = code, 1
    raise SystemExit(f"exit {code}: {text}")


def _replay_file(name: str, text: str) -> Any:
    TMP.mkdir(parents=True, exist_ok=True)
    path = TMP / name
    path.write_text(text)
    return ReplayStore([path])


def _judge(output: str) -> Any:
    task = Game24Task()
    judge = JudgeValue(FakeListChatModel(responses=[output]), task, samples=1, batched=False)
    score = judge(task.items()[0], TreeNode(id="n1", text="4 + 5 = 9 (left: 6 9 10)\n"))
    return f"value={score.value} note={score.note!r}"


def _tale(output: str) -> Any:
    est = TaleEstimator(FakeListChatModel(responses=[output]), min_tokens=100)
    return f"estimate={est(Item(id='q', input='4 5 6 10'))}"


_RECORD = {"dataset": "x", "task": "t", "item_id": "1", "kind": "cot",
           "request": {"messages": [{"role": "user", "content": "hi"}]}, "completions": ["a"]}

CASES: list[Case] = [
    Case("Budget", "Budget(max_tokens=-5)", lambda: Budget(max_tokens=-5),
         ("max_tokens", "-5", "greater than 0")),
    Case("Budget", "Budget(max_tokens='lots')", lambda: Budget(max_tokens="lots"),
         ("max_tokens", "'lots'", "valid integer")),
    Case("Budget", "Budget(max_tokens=0)", lambda: Budget(max_tokens=0), ("max_tokens", "0")),
    Case("Budget", "Budget(max_tokens=100, reserve=100)",
         lambda: Budget(max_tokens=100, reserve=100), ("reserve (100)", "limit (100 tokens)")),
    Case("Budget", "Budget(count='words', max_tokens=10)",
         lambda: Budget(count="words", max_tokens=10), ("count", "'words'")),
    Case("Budget", "Budget(count='cost')", lambda: Budget(count="cost"),
         ("max_cost_usd", "None")),
    Case("Budget", "Budget()", lambda: Budget(), ("needs max_tokens", "None")),
    Case("Budget", "Budget(max_tokens=1000, prompt_margin=2)",
         lambda: Budget(max_tokens=1000, prompt_margin=2), ("prompt_margin", "2")),
    Case("Budget", "Budget(max_tokens=10, max_token=5)  (typo)",
         lambda: Budget(max_tokens=10, max_token=5), ("max_token", "Extra inputs")),
    Case("Meter", "Meter(budget, spent_units=-1)",
         lambda: Meter(Budget(max_tokens=10), spent_units=-1), ("spent_units", "-1")),
    Case("Meter", "meter.reserve(-3)", lambda: Meter(Budget(max_tokens=10)).reserve(-3),
         ("units", "-3")),
    Case("RetryPolicy", "RetryPolicy(max_attempts=0)", lambda: RetryPolicy(max_attempts=0),
         ("max_attempts", "0")),
    Case("RetryPolicy", "RetryPolicy(initial_wait_s=-1)",
         lambda: RetryPolicy(initial_wait_s=-1), ("initial_wait_s=-1",)),
    Case("guard", "guard(node, on_exhausted='stop')",
         lambda: guard(lambda s: s, on_exhausted="stop"), ("on_exhausted", "'stop'")),
    Case("with_budget", "with_budget(graph, budget, scope='global')",
         lambda: with_budget(object(), Budget(max_tokens=10), scope="global"),
         ("scope", "'global'")),
    Case("Budget", "Budget(count='cost', max_cost_usd=float('inf'), prices=...)",
         lambda: Budget(count="cost", max_cost_usd=float("inf"), prices=_PRICES),
         ("max_cost_usd", "finite")),
    Case("Budget", "Budget(max_tokens=10, max_cost_usd=1.0)  (two limits)",
         lambda: Budget(max_tokens=10, max_cost_usd=1.0),
         ("max_cost_usd=1.0", "count='cost'")),
    Case("Budget", "Budget(count='cost', max_cost_usd=1.0, max_tokens=10, prices=...)",
         lambda: Budget(count="cost", max_cost_usd=1.0, max_tokens=10, prices=_PRICES),
         ("max_tokens=10", "count='cost'")),
    Case("Meter", "meter.commit(reservation, -5)", lambda: _commit(-5), ("units", "-5")),
    Case("Meter", "meter.commit(reservation, 5) twice", lambda: _commit(5, twice=True),
         ("not open", "already committed")),
    Case("budgeted", "budgeted(llm).invoke(...) outside a budgeted run",
         lambda: budgeted(FakeListChatModel(responses=["x"])).invoke("hi"),
         ("NoMeterError", "outside a budgeted run", "require_meter=False")),
    Case("budgeted", "budgeted(llm, meter='lots')",
         lambda: budgeted(FakeListChatModel(responses=["x"]), meter="lots"),
         ("TypeError", "meter=", "'lots'")),
    Case("with_budget", "with_budget(graph, 5000)", lambda: with_budget(_graph(), 5000),
         ("TypeError", "Budget", "int 5000")),
    Case("with_budget", "with_budget(graph, None)", lambda: with_budget(_graph(), None),
         ("TypeError", "Budget", "None")),
    Case("with_budget", "with_budget(builder, budget)  (not compiled)",
         lambda: with_budget(_builder(), Budget(max_tokens=10)),
         ("TypeError", "compiled graph", "StateGraph")),
    Case("with_budget", "with_budget(graph, budget, on_exhausted='stop')",
         lambda: with_budget(_graph(), Budget(max_tokens=10), on_exhausted="stop"),
         ("on_exhausted", "'stop'")),
    Case("guard", "guard(42)", lambda: guard(42), ("TypeError", "int")),
    Case("TokenBudgetMiddleware", "TokenBudgetMiddleware(run_limit=-5)",
         lambda: _middleware(run_limit=-5), ("run_limit", "-5")),
    Case("TokenBudgetMiddleware", "TokenBudgetMiddleware(run_limit='lots')",
         lambda: _middleware(run_limit="lots"), ("run_limit", "'lots'")),
    Case("TokenBudgetMiddleware", "TokenBudgetMiddleware(exit_behavior='explode')",
         lambda: _middleware(run_limit=10, exit_behavior="explode"),
         ("exit_behavior", "explode")),
    Case("Task definition", "build_planner(...).invoke({}) with no item",
         lambda: _planner_without_item(), ("needs an item",)),
    Case("Judge output", "judge answers 'banana'", lambda: _judge("banana"),
         ("value=0.0", "unparsable")),
    Case("Judge output", "judge answers ''", lambda: _judge(""), ("value=0.0", "unparsable")),
    Case("Estimator output", "parse_token_budget('about two hundred tokens')",
         lambda: f"estimate={parse_token_budget('about two hundred tokens')}",
         ("estimate=None",)),
    Case("Estimator output", "parse_token_budget('')", lambda: f"estimate={parse_token_budget('')}",
         ("estimate=None",)),
    Case("Estimator output", "TALE model answers 'about two hundred tokens'",
         lambda: _tale("about two hundred tokens"), ("estimate=None",)),
    Case("Estimator output", "TALE model answers '1.5k tokens'", lambda: _tale("1.5k tokens"),
         ("estimate=1500",)),
    Case("Replay file", "missing file", lambda: ReplayStore([TMP / "missing.jsonl"]),
         ("missing.jsonl",)),
    Case("Replay server fault", "Fault(status=404)", lambda: Fault(status=404),
         ("status", "404")),
    Case("Replay server fault", "parse_fault('boom')", lambda: parse_fault("boom"), ("'boom'",)),
    Case("Replay server fault", "parse_fault('latency=abc')", lambda: parse_fault("latency=abc"),
         ("'latency=abc'",)),
    Case("Replay store", "ReplayStore(on_exhausted='stop')",
         lambda: ReplayStore([], on_exhausted="stop"), ("on_exhausted", "'stop'")),
    Case("CLI", "budget-graph bench chess", lambda: _cli("bench", "chess"),
         ("exit 2", "'chess'", "game24")),
    Case("CLI", "budget-graph bench --budget-tokens lots",
         lambda: _cli("bench", "--budget-tokens", "lots"), ("exit 2", "--budget-tokens", "'lots'")),
    Case("CLI", "budget-graph bench --budget-tokens=-5",
         lambda: _cli("bench", "--budget-tokens=-5"), ("exit 2", "--budget-tokens", "'-5'")),
    Case("CLI", "budget-graph bench --limit 0", lambda: _cli("bench", "--limit", "0"),
         ("--limit", "0")),
    Case("CLI", "budget-graph bench --limit abc", lambda: _cli("bench", "--limit", "abc"),
         ("exit 2", "--limit", "'abc'")),
    Case("CLI", "budget-graph bench game24 --methods nope",
         lambda: _cli("bench", "game24", "--methods", "nope"), ("'nope'",)),
    Case("CLI", "budget-graph report missing.jsonl",
         lambda: _cli("report", str(TMP / "missing.jsonl")), ("missing.jsonl",)),
]

CASES += [
    Case("Estimator output", "parse_token_budget('-5')",
         lambda: f"estimate={parse_token_budget('-5')}", ("estimate=None",)),
    Case("Replay file", "corrupt JSONL line",
         lambda: _replay_file("corrupt.jsonl", '{"dataset": "x"\n'), ("corrupt.jsonl", "line 1")),
    Case("Replay file", "record without 'completions'",
         lambda: _replay_file("missing_field.jsonl", json.dumps(
             {k: v for k, v in _RECORD.items() if k != "completions"}) + "\n"),
         ("missing_field.jsonl", "completions")),
]


_PRICES = {"m": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}


def _commit(units: int, *, twice: bool = False) -> Any:
    meter = Meter(Budget(max_tokens=100))
    held = meter.reserve(10)
    if twice:
        meter.commit(held, units)
    return meter.commit(held, units)


def _builder() -> Any:
    from langgraph.graph import START, StateGraph

    from budget_graph import BudgetState

    builder = StateGraph(BudgetState)
    builder.add_node("n", lambda s: {})
    builder.add_edge(START, "n")
    return builder


def _graph() -> Any:
    return _builder().compile()


def _middleware(**kwargs: Any) -> Any:
    from budget_graph.middleware import TokenBudgetMiddleware

    return TokenBudgetMiddleware(**kwargs)


def _planner_without_item() -> Any:
    from budget_graph.planner import build_planner

    app = build_planner(FakeListChatModel(responses=["x"]), task=Game24Task(),
                        budget=Budget(max_tokens=100))
    return app.invoke({})


def observe(case: Case) -> str:
    """What the user sees: ``TypeName: first line of the message`` or the returned value."""
    try:
        result = case.run()
    except BaseException as exc:  # noqa: BLE001 - SystemExit from the CLI included
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        # pydantic puts the field on line 2 and the message with the value on line 3.
        text = " / ".join(lines[:3])
        return f"{type(exc).__name__}: {text}"
    return str(result)


def render_table(cases: list[Case] = CASES) -> str:
    """The markdown table of ``docs/reliability.md``."""
    rows = ["| Where | Input | What the user sees |", "|---|---|---|"]
    for case in cases:
        seen = observe(case).replace("|", "\\|")
        seen = re.sub(r"For further information visit \S+", "", seen)
        seen = re.sub(r"0x[0-9a-f]+", "0x…", seen).strip(" /")
        seen = re.sub(r"reservation \d+", "reservation <id>", seen)
        rows.append(f"| {case.area} | `{case.given}` | {seen} |")
    return "\n".join(rows)


@pytest.mark.parametrize("case", CASES, ids=[c.given for c in CASES])
def test_bad_input_is_named(case: Case) -> None:
    seen = observe(case)
    for part in case.expect:
        assert part in seen, f"{part!r} not in {seen!r}"
    assert "Traceback" not in seen


def test_cli_errors_leave_no_result_files(tmp_path) -> None:
    out = tmp_path / "bench-out"
    for argv in (["bench", "chess"], ["bench", "--budget-tokens", "lots"],
                 ["bench", "--limit", "0"],
                 ["bench", "game24", "--methods", "nope"]):
        with pytest.raises(SystemExit):
            _cli(*argv, "--out", str(out))
    assert not out.exists()


def test_docs_table_is_current() -> None:
    text = DOC.read_text()
    assert render_table() in text, "run: python scripts/bad_input_table.py"
