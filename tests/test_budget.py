import copy
import operator
import pickle
import re
from dataclasses import fields, replace
from functools import reduce

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from budget_graph import Budget, BudgetError, ModelPrice, Spend, Usage


def test_budget_validates_field_and_value():
    with pytest.raises(ValidationError, match="max_tokens"):
        Budget(max_tokens=0)
    with pytest.raises(ValidationError, match="max_tokens"):
        Budget(max_tokens=-5)
    with pytest.raises(ValidationError, match="max_tokens"):
        Budget(max_tokens="100")  # strict: no silent coercion
    with pytest.raises(ValidationError, match="max_tokens"):
        Budget(max_tokens=10.5)
    with pytest.raises(ValidationError, match="count"):
        Budget(max_tokens=10, count="words")
    with pytest.raises(
        ValidationError, match=r"reserve \(10\) must be smaller than the limit \(10 tokens\)"
    ):
        Budget(max_tokens=10, reserve=10)
    with pytest.raises(ValidationError, match="needs max_tokens"):
        Budget()
    with pytest.raises(ValidationError, match="needs max_cost_usd"):
        Budget(count="cost", prices={"m": ModelPrice(input_per_mtok=1, output_per_mtok=2)})


def test_count_modes():
    assert Budget(max_tokens=100, count="output").units(input_tokens=50, output_tokens=7) == 7
    assert Budget(max_tokens=100).units(input_tokens=50, output_tokens=7) == 57
    b = Budget(
        count="cost",
        max_cost_usd=0.01,
        prices={"gpt-4o": ModelPrice(input_per_mtok=2.5, output_per_mtok=10.0)},
    )
    assert b.limit == 10_000  # micro-USD
    # 1000 input * 2.5 + 100 output * 10 = 3500 micro-USD; dated snapshot names match
    assert b.units(input_tokens=1000, output_tokens=100, model="gpt-4o-2024-08-06") == 3500
    assert b.max_output_for(100, model="gpt-4o") == 10
    with pytest.raises(BudgetError, match="No price for model 'llama'"):
        b.units(input_tokens=1, model="llama")


usages = st.builds(Usage, *(st.integers(0, 10_000) for _ in range(7)))
spends = st.builds(
    lambda u, node: Spend.of(u, node=node), usages, st.sampled_from([None, "a", "b", "c"])
)


@given(spends, spends, spends)
def test_spend_addition_is_associative_and_commutative(a, b, c):
    assert (a + b) + c == a + (b + c)
    assert a + b == b + a


@given(st.lists(spends, max_size=8))
def test_sum_works_and_by_node_adds_up(items):
    total = sum(items, Spend())
    assert total == reduce(operator.add, items, Spend())
    if items:
        assert sum(items) == total  # plain sum() starts from 0
    attributed = sum((s.usage for s in items if s.by_node), Usage())
    assert sum(total.by_node.values(), Usage()) == attributed


def test_spend_is_immutable():
    s = Spend(input_tokens=1)
    with pytest.raises(AttributeError):
        s.input_tokens = 2  # type: ignore[misc]


@given(spends, spends)
def test_sums_behave_like_constructed_values(a, b):
    # Equal, picklable, copyable and immutable like a value built field by field.
    total = a + b
    rebuilt = Spend(
        **{f.name: getattr(total, f.name) for f in fields(Usage)},
        by_node=dict(total.by_node),
    )
    assert total == rebuilt and repr(total) == repr(rebuilt)
    assert total.usage == Usage(**{f.name: getattr(total, f.name) for f in fields(Usage)})
    assert pickle.loads(pickle.dumps(total)) == total
    assert copy.deepcopy(total.usage) == rebuilt.usage
    assert hash(total.usage) == hash(rebuilt.usage)
    more = replace(total.usage, calls=total.calls + 1)
    assert replace(total, usage=more).calls == total.calls + 1
    with pytest.raises(AttributeError):
        total.usage.calls = 0  # type: ignore[misc]
    with pytest.raises(TypeError, match="not both"):
        Spend(total.usage, calls=1)


def test_no_constructor_bypass_in_the_package():
    # Values are built through their constructors: no object.__new__ or __dict__ writes.
    from pathlib import Path

    import budget_graph

    root = Path(budget_graph.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "object.__new__" not in text, path
        assert not re.search(r'setattr\([^)]*"__dict__"', text), path
        assert not re.search(r"__dict__(\[[^\]]*\]\s*=|\.update\()", text), path


def test_spend_rebuilds_by_node_from_plain_dicts_and_lists():
    # A serializer that does not allow Usage restores it as a plain container.
    s = Spend(input_tokens=3, calls=1, by_node={"a": {"input_tokens": 3, "calls": 1}, "b": [1, 2]})
    assert s.by_node["a"] == Usage(input_tokens=3, calls=1)
    assert s.by_node["b"] == Usage(1, 2)
    assert (s + s).by_node["a"].calls == 2


@given(spends, spends)
def test_subtraction_undoes_addition(a, b):
    assert (a + b) - b == Spend(
        a.usage, by_node={k: v for k, v in a.by_node.items() if v != Usage()}
    )


_usages = st.builds(
    Usage,
    input_tokens=st.integers(0, 1000),
    output_tokens=st.integers(0, 1000),
    calls=st.integers(0, 3),
    units=st.integers(0, 2000),
)
_records = st.lists(
    st.one_of(
        st.tuples(_usages, st.sampled_from([None, "plan", "act"])),
        st.builds(Spend.of, _usages, node=st.sampled_from([None, "plan", "act"])),
    ),
    min_size=1,
    max_size=8,
)


@given(_records)
def test_fold_equals_the_sum_of_the_records(records: list) -> None:
    as_spends = [r if isinstance(r, Spend) else Spend.of(r[0], node=r[1]) for r in records]
    assert Spend.fold(records) == sum(as_spends, Spend())


@pytest.mark.parametrize("thread", ["tokens", "cost"])
def test_loads_checkpoints_written_by_earlier_versions(tmp_path, thread):
    """State saved before ``Spend`` held a ``Usage`` total still loads, adds and resumes."""
    import json
    import shutil
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    from budget_graph import with_budget
    from tests.fixtures.checkpoints.spend_graph import BUDGETS, DIR, build

    expected = json.loads((DIR / "spend_v1.json").read_text())[thread]
    shutil.copy(DIR / "spend_v1.sqlite", tmp_path / "ckpt.sqlite")
    conn = sqlite3.connect(tmp_path / "ckpt.sqlite", check_same_thread=False)
    app = with_budget(build(SqliteSaver(conn)), BUDGETS[thread])
    cfg = {"configurable": {"thread_id": thread}}
    saved = app.get_state(cfg).values
    spend = saved["spend"]
    fields = ("input_tokens", "output_tokens", "calls", "estimated_calls", "units")
    assert saved["budget"] == BUDGETS[thread]
    assert {f: getattr(spend, f) for f in fields} == expected["total"]
    assert {n: {f: getattr(u, f) for f in fields} for n, u in spend.by_node.items()} == expected[
        "by_node"
    ]
    assert all(isinstance(u, Usage) for u in spend.by_node.values())
    # A new run on the same thread adds to the saved spend.
    app.invoke({"steps": []}, cfg)
    again = app.get_state(cfg).values["spend"]
    assert again.units == 2 * spend.units and again.calls == 6
    assert again.by_node["a"].units == 2 * spend.by_node["a"].units
    conn.close()
