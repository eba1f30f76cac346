"""Each definition the project rests on, checked on small hand-computed examples.

The numbers quoted from the audit of ``budget-graph bench date`` (issue 27, items 1-7) are
reproduced here on hand-built inputs, next to what the definitions give.
"""

from __future__ import annotations

import inspect

import pytest

from budget_graph.anytime import build_anytime
from budget_graph.budget import Budget, Spend
from budget_graph.efficiency import RunRecord
from budget_graph.efficiency.metrics import (
    BudgetGrid,
    anytime_curve,
    anytime_index,
    budget_grid,
    current_answer_curve,
    e3,
    efficiency,
)
from budget_graph.efficiency.report import render_json
from budget_graph.efficiency.significance import divergent_pairs, mcnemar_p
from budget_graph.nodes import (
    Action,
    BestFirst,
    FrontierProportional,
    PlannerEdge,
    PolicyView,
    SearchStats,
    Tree,
    TreeNode,
    ValueProportional,
    backup,
    generated_left,
)
from budget_graph.planner import build_planner
from budget_graph.replay import ReplayChatModel
from budget_graph.stopping import BetaPosterior, MarginalGain, RelativeGain, Votes
from budget_graph.tasks.date import DateTask
from budget_graph.testing import BillingFakeChat
from tests.test_nodes_value import ITEM, ToyTask


def run(item: str, correct: bool, gen: int = 100, prompt: int = 0, **kw) -> RunRecord:
    return RunRecord(
        task="date",
        item=item,
        method=kw.pop("method", "m"),
        correct=correct,
        prompt_tokens=prompt,
        generated_tokens=gen,
        **kw,
    )


# ------------------------------------------------------------- 1. TALE's units


def test_1_tale_estimate_caps_generated_tokens_not_prompt_plus_output() -> None:
    # Audit: estimate 300, one call of 600 prompt + 100 output. Read as units it left
    # 300 - 700 -> 0 and the search stopped on "budget" after 100 of its 300 tokens.
    state = {
        "budget_tokens": 300,
        "budget_tokens_base": 0,
        "spend": Spend(input_tokens=600, output_tokens=100, units=700, calls=1),
        "search_stats": SearchStats(expansions=1, expand_units=700),
    }
    assert generated_left(state) == 200
    edge = PlannerEdge()
    go_on = edge.check(state, actions=(Action("expand", "0.1"),), reason=None, remaining=49_300)
    assert go_on is None
    spent = {**state, "spend": Spend(input_tokens=1800, output_tokens=300, units=2100, calls=3)}
    assert generated_left(spent) == 0
    assert (
        edge.check(spent, actions=(Action("expand", "0.1"),), reason=None, remaining=47_900)
        == "budget"
    )


# ------------------------------------------------------------- 2. one relative-gain rule


def test_2_relative_gain_is_signed_checked_while_q_positive_first_low_step_stops() -> None:
    q4 = BetaPosterior()((4,))  # 4 unanimous votes: 31/32 = 0.969
    q_tie = BetaPosterior()((4, 4))  # then 4 for another answer: 0.5
    assert (round(q4, 3), q_tie) == (0.969, 0.5)
    rule = RelativeGain(0.05)
    drop = rule([q4, q_tie])
    assert drop.stop and drop.statistic == pytest.approx(-0.4839, abs=1e-4)
    # MarginalGain (self-consistency) on the same votes: the audit's magnitude version
    # (|gain| = 0.48 >= 0.05) did not stop; the definition does.
    votes = Votes().add(["a"] * 4).add(["b"] * 4)
    assert MarginalGain(0.05)(votes).stop
    assert MarginalGain(0.05)(votes).statistic == pytest.approx(drop.statistic)
    # Undefined while Q(b) = 0: the planner's old rule stopped "converged" on 0, 0, 0.
    assert not rule([0.0, 0.0, 0.0])
    assert not rule([0.0, 0.8])  # gain from 0 is undefined: no stop
    assert rule([0.0, 0.8, 0.81])  # +1.25% < 5%: the first low step stops
    assert RelativeGain(0.05).patience == 1
    assert inspect.signature(build_planner).parameters["patience"].default == 1


@pytest.mark.parametrize(
    "quality",
    [[0.5, 0.9, 0.92], [0.0, 0.0, 0.0], [0.969, 0.5], [1.0, 1.0], [0.2, 0.4, 0.41, 0.415], [3.0]],
)
@pytest.mark.parametrize("patience", [1, 2])
def test_2_planner_edge_and_marginal_gain_share_the_rule(quality, patience) -> None:
    expected = RelativeGain(0.05, patience)(quality).stop
    state = {"search_stats": SearchStats()}
    got = PlannerEdge(min_gain=0.05, patience=patience).check(
        state, actions=(Action("expand", "0"),), reason=None, remaining=None, quality=quality
    )
    assert (got == "converged") is expected
    # MarginalGain with Q = the quality sequence at batch boundaries
    table = {}
    votes = Votes()
    for q in quality:
        votes = votes.add(["a"])
        table[votes.n] = q
    rule = MarginalGain(0.05, quality=lambda v: table[v.n], patience=patience)
    assert rule(votes).stop is expected


# ------------------------------------------------------------- 3. Q(b) is best so far


def test_3_anytime_curve_is_a_running_maximum() -> None:
    # Audit: sc-adaptive0.8's current answer gives Q = 0.7688 (276/359) at every budget,
    # the best answer so far 0.7716 (277/359): one question's trace goes down.
    runs = [run(str(i), True, anytime=[(50, 1.0), (100, 1.0)]) for i in range(276)]
    runs.append(run("down", False, anytime=[(50, 1.0), (100, 0.0)]))
    runs += [run(f"w{i}", False, anytime=[(50, 0.0), (100, 0.0)]) for i in range(82)]
    assert len(runs) == 359
    assert anytime_curve(runs, [100]) == [(100, pytest.approx(0.7716, abs=1e-4))]
    assert current_answer_curve(runs, [100]) == [(100, pytest.approx(0.7688, abs=1e-4))]
    assert anytime_curve(runs, [100])[0][1] == 277 / 359


# ------------------------------------------------------------- 4. kind for traced runs


def test_4_traced_and_untraced_runs_are_measured_alike_in_every_kind() -> None:
    # Audit: two identical runs (1,000 prompt + 100 generated tokens) asked for Q at 500
    # total tokens gave 1.0 traced and 0.0 untraced.
    untraced = run("1", True, gen=100, prompt=1000)
    traced = run("1", True, gen=100, prompt=1000, anytime=[(100, 1.0)], anytime_usage=[(1000, 0)])
    no_usage = run("1", True, gen=100, prompt=1000, anytime=[(100, 1.0)])
    for r in (untraced, traced, no_usage):
        assert anytime_curve([r], [500, 1100], "total") == [(500, 0.0), (1100, 1.0)]
        assert anytime_curve([r], [99, 100], "generated") == [(99, 0.0), (100, 1.0)]


# ------------------------------------------------------------- 5. AI on a fixed grid


def test_5_anytime_index_does_not_depend_on_the_other_rows() -> None:
    budgeted = [
        run(
            str(i),
            i < 3,
            gen=80,
            prompt=1360,
            method="sc-budget",
            budget=1800,
            anytime=[(80, float(i < 3))],
            anytime_usage=[(1360, 0)],
        )
        for i in range(4)
    ]
    fixed40 = [
        run(
            str(i),
            i < 3,
            gen=3400,
            prompt=5440,
            method="sc-fixed40",
            anytime=[(850 * k, float(i < 3)) for k in range(1, 5)],
            anytime_usage=[(1360 * k, 0) for k in range(1, 5)],
        )
        for i in range(4)
    ]
    # The audit's grid ended at the largest spend in the report, so the index moved with
    # the other rows (0.609 with everything, 2.401 alone on the full run).
    alone = anytime_index(anytime_curve(budgeted, budget_grid(budgeted, points=6)))
    together = anytime_index(anytime_curve(budgeted, budget_grid(budgeted + fixed40, points=6)))
    assert alone != together

    # The task's grid is fixed: the row's index is the same in both reports.
    def index(records: list[RunRecord]) -> float:
        rows = render_json(records)["tasks"][0]["rows"]
        return next(r["anytime_index"] for r in rows if r["method"] == "sc-budget")

    assert index(budgeted) == index(budgeted + fixed40) == pytest.approx(0.75 / 10_240)
    # The definition's even grid telescopes to Q(top)/top; a log grid is an option.
    grid = BudgetGrid(top=1000, points=4)
    assert grid.budgets() == [250.0, 500.0, 750.0, 1000.0]
    assert BudgetGrid(top=1000, points=4, spacing="log").budgets() == [125.0, 250.0, 500.0, 1000.0]
    assert grid.index(budgeted) == pytest.approx(0.75 / 1000)


# ------------------------------------------------------------- 6. proportional split


def _frontier(values: list[float]) -> Tree:
    nodes = [TreeNode(id="0", status="expanded", reward=0.0, value=0.0)]
    nodes += [
        TreeNode(id=f"0.{i}", parent="0", depth=1, reward=v, value=v) for i, v in enumerate(values)
    ]
    return Tree(nodes)


def test_6_whole_frontier_proportional_split() -> None:
    view = PolicyView(tree=_frontier([0.9, 0.8, 0.7, 0.6]), remaining=1000)
    whole = [a.allocated for a in FrontierProportional()(view).actions]
    # B(n_i) = 1000 * V_i / 3.0, floored: 300, 266.7, 233.3, 200. The audit's
    # [299, 266, 233, 199] is the same split floored after float error in the sum.
    assert whole == [300, 266, 233, 200]
    assert all(abs(a - b) <= 1 for a, b in zip(whole, [299, 266, 233, 199], strict=True))
    assert sum(whole) <= 1000
    top3 = [a.allocated for a in ValueProportional(width=3)(view).actions]
    assert top3 == [375, 333, 291]  # the audit's [374, 333, 291]: top-`width` only
    best = BestFirst()(view).actions
    assert [(a.node, a.allocated) for a in best] == [("0.0", 1000)]  # one node gets all
    # A share below one expansion's expected cost is not expanded.
    cheap = PolicyView(tree=_frontier([0.9, 0.8, 0.7, 0.6]), remaining=1000, expected_cost=250)
    assert [a.node for a in FrontierProportional()(cheap).actions] == ["0.0", "0.1"]


# ------------------------------------------------------------- 7. visible tokens


def test_7_t_counts_visible_tokens_hidden_reasoning_beside() -> None:
    r = run(
        "1",
        True,
        gen=1000,
        prompt=500,
        reasoning_tokens=800,
        anytime=[(600, 0.0), (1000, 1.0)],
        anytime_usage=[(500, 500), (500, 800)],
    )
    assert (r.visible_tokens, r.tokens("reasoning"), r.tokens("generated")) == (200, 800, 1000)
    assert efficiency([r]) == 1 / 200  # E on visible tokens by default
    assert efficiency([r], "generated") == 1 / 1000
    assert r.trace("visible") == [(100, 0.0), (200, 1.0)]
    assert anytime_curve([r], [150, 200]) == [(150, 0.0), (200, 1.0)]
    with pytest.raises(ValueError, match="reasoning_tokens"):
        run("1", True, gen=10, reasoning_tokens=11)


# ------------------------------------------------------------- 8. gamma


def test_8_value_backup_discounts_by_gamma_0_9() -> None:
    assert inspect.signature(build_planner).parameters["gamma"].default == 0.9
    tree = _frontier([3.0])
    tree = tree.merged([TreeNode(id="0.0.0", parent="0.0", depth=2, reward=2.0, value=2.0)])
    changed = {n.id: n.value for n in backup(tree, ["0.0"], gamma=0.9)}
    assert changed["0.0"] == pytest.approx(3.0 + 0.9 * 2.0)
    assert changed["0"] == pytest.approx(0.9 * (3.0 + 0.9 * 2.0))


# ------------------------------------------------------------- 9. planner anytime trace


def test_9_planner_runs_record_an_anytime_trace() -> None:
    answers = {
        "PROPOSE[]": "a\nb\nc",
        "PROPOSE[b\n]": "x\ngoal",
        "PROPOSE[a\n]": "y\nz",
        "PROPOSE[c\n]": "w",
        "VALUE[a\n]": "likely",
        "VALUE[b\n]": "sure",
        "VALUE[c\n]": "impossible",
    }
    model = BillingFakeChat(answers=answers, texts=["impossible"])
    app = build_planner(model, task=ToyTask(), budget=Budget(max_tokens=50_000), judge_samples=1)
    out = app.invoke({"item": ITEM})
    trace = out["trace"]
    spent = [p.output_tokens for p in trace]
    assert spent == sorted(spent) and spent[-1] == out["spend"].output_tokens
    assert trace[-1].input_tokens == out["spend"].input_tokens
    assert (trace[-1].answer, trace[-1].quality) == ("goal", 1.0)
    assert all(p.answer is None for p in trace[:-1])  # nothing verified before the goal


# ------------------------------------------------------------- 10. paired tests


def test_10_marks_stand_on_paired_tests() -> None:
    # McNemar: 6 items right only in a, 0 only in b: p = 2 * (1/2)^6 = 0.03125.
    assert mcnemar_p([True] * 6 + [False] * 4, [False] * 10) == pytest.approx(0.03125)
    assert mcnemar_p([True, False], [False, True]) == 1.0
    # The audit: rows one or two questions apart were marked. 359 items, 1 discordant.
    a = [run(str(i), i < 277, method="a", gen=3400) for i in range(359)]
    b = [run(str(i), i < 276, method="b", gen=80) for i in range(359)]
    assert divergent_pairs({"a": a, "b": b}) == []


# ------------------------------------------------------------- 11. E³, anytime generation


def test_11_e3_is_accuracy_squared_over_mean_tokens() -> None:
    rs = [run(str(i), i < 3, gen=250) for i in range(4)]
    assert e3(rs) == pytest.approx(0.75**2 / 250)
    assert e3(rs, per_1k=True) == pytest.approx(2.25)
    assert e3([]) is None and e3([run("1", True, gen=0)]) is None


def test_11_anytime_generation_progressive_max_tokens_best_so_far() -> None:
    task = DateTask()
    item = task.items()[4]
    app = build_anytime(
        ReplayChatModel(datasets=["date_ltm"]), task=task, budget=Budget(max_tokens=20_000)
    )
    out = app.invoke({"item": item})
    # step 1: the first recorded chain cut at 100 tokens (no answer, Q = 0); step 2: the
    # next chain, complete under 200 (Q = 1; the gain from 0 is undefined); step 3: Q
    # stays 1, gain 0 < 0.05: stop, answering the best so far (step 2's).
    assert [(p.output_tokens, p.quality) for p in out["trace"]] == [
        (100, 0.0),
        (204, 1.0),
        (308, 1.0),
    ]
    assert out["stop_reason"] == "converged" and out["spend"].calls == 3
    assert out["answer"] == out["trace"][1].answer
    assert out["spend"].output_tokens == 308 and app.last_meter.spent <= 20_000
