"""ReplayChatModel and ReplayStore: cursors, usage, max_tokens, n, streaming, not-recorded."""

from __future__ import annotations

import pickle
import re

import pytest
from langchain_core.messages import HumanMessage

from budget_graph.accounting import count_messages, count_tokens
from budget_graph.errors import BudgetError
from budget_graph.replay import (
    NotRecordedError,
    ReplayChatModel,
    ReplayExhaustedError,
    ReplayRecord,
    ReplayStore,
    load_records,
)
from budget_graph.tasks.game24 import Game24Task

TASK = Game24Task()
ITEM = TASK.items()[0]


def _record(prompt: str, completions: list[str], task: str = "toy") -> ReplayRecord:
    return ReplayRecord(dataset="toy", task=task, item_id="1", kind="cot",
                        request={"messages": [{"role": "user", "content": prompt}]},
                        completions=tuple(completions))


@pytest.fixture
def toy() -> ReplayChatModel:
    store = ReplayStore([], records=[_record("q", ["a one", "b two", "c three"])])
    return ReplayChatModel(store=store)


def test_usage_counts_the_real_request(replay_chat_model: ReplayChatModel) -> None:
    prompt = TASK.cot_prompt(ITEM)
    msg = replay_chat_model.invoke(prompt)
    rec = load_records("game24_cot").__next__()
    assert msg.content == rec.completions[0]
    assert msg.usage_metadata == {
        "input_tokens": count_tokens(prompt) + 7,  # README: one user message = +7 tokens
        "output_tokens": count_tokens(rec.completions[0]),
        "total_tokens": count_tokens(prompt) + 7 + count_tokens(rec.completions[0]),
    }
    assert msg.usage_metadata["input_tokens"] == count_messages([HumanMessage(prompt)]) == 437


def test_cursor_order_and_cycle(toy: ReplayChatModel) -> None:
    assert [toy.invoke("q").content for _ in range(4)] == ["a one", "b two", "c three", "a one"]
    toy.replay_store.reset()
    assert toy.invoke("q").content == "a one"


def test_on_exhausted_error() -> None:
    store = ReplayStore([], records=[_record("q", ["x"])], on_exhausted="error")
    llm = ReplayChatModel(store=store)
    llm.invoke("q")
    with pytest.raises(ReplayExhaustedError, match=re.escape(
            "Replay exhausted for task 'toy': 1 completions recorded, 1 more requested")):
        llm.invoke("q")


def test_seed_shuffles_deterministically() -> None:
    recs = [_record("q", [str(i) for i in range(20)])]
    draw = [ReplayChatModel(store=ReplayStore([], records=recs, seed=s)).invoke("q").content
            for s in (1, 1, None)]
    assert draw[0] == draw[1] and draw[2] == "0"
    seq = [ReplayChatModel(store=ReplayStore([], records=recs, seed=s)).generate(
        [[HumanMessage("q")]], n=20).generations[0] for s in (1, 2)]
    assert [g.text for g in seq[0]] != [g.text for g in seq[1]]
    assert sorted(g.text for g in seq[0]) == sorted(str(i) for i in range(20))


def test_n_completions_share_the_prompt(toy: ReplayChatModel) -> None:
    res = toy.generate([[HumanMessage("q")]], n=3)
    gens = res.generations[0]
    assert [g.text for g in gens] == ["a one", "b two", "c three"]
    usage = res.llm_output["token_usage"]  # type: ignore[index]
    assert usage["prompt_tokens"] == count_messages([HumanMessage("q")])
    assert usage["completion_tokens"] == sum(count_tokens(g.text) for g in gens)
    # As ChatOpenAI does: every generation carries the whole call's usage.
    assert all(g.message.usage_metadata["output_tokens"] == 6 for g in gens)  # type: ignore[attr-defined]


def test_max_tokens_truncates(replay_chat_model: ReplayChatModel) -> None:
    msg = replay_chat_model.invoke(TASK.cot_prompt(ITEM), max_tokens=5)
    assert msg.response_metadata["finish_reason"] == "length"
    assert msg.usage_metadata["output_tokens"] == 5 == count_tokens(str(msg.content))
    full = load_records("game24_cot").__next__().completions[0]
    assert full.startswith(str(msg.content))
    bound = ReplayChatModel(store=replay_chat_model.replay_store, max_tokens=10_000)
    assert bound.invoke(TASK.cot_prompt(ITEM)).response_metadata["finish_reason"] == "stop"


def test_stop_sequence(toy: ReplayChatModel) -> None:
    assert toy.invoke("q", stop=[" "]).content == "a"


def test_stream_and_async(toy: ReplayChatModel) -> None:
    chunks = list(toy.stream("q"))
    merged = chunks[0]
    for c in chunks[1:]:
        merged = merged + c
    assert merged.content == "a one"
    assert merged.usage_metadata["output_tokens"] == count_tokens("a one")


async def test_async_generate_and_stream(toy: ReplayChatModel) -> None:
    assert (await toy.ainvoke("q")).content == "a one"
    text = "".join([str(c.content) async for c in toy.astream("q")])
    assert text == "b two"


def test_not_recorded_names_task_and_closest(replay_chat_model: ReplayChatModel) -> None:
    prompt = TASK.cot_prompt(ITEM).replace("4 5 6 10", "4 5 6 11")
    with pytest.raises(NotRecordedError) as info:
        replay_chat_model.invoke(prompt)
    err = info.value
    assert isinstance(err, BudgetError)
    assert err.task == "game24" and err.closest is not None
    assert "Input: 4 5 6 10" in err.closest and err.similarity > 0.99
    assert str(err).startswith("Request not recorded: 'user: Use numbers")
    assert "closest recorded request (task 'game24'" in str(err)
    assert pickle.loads(pickle.dumps(err)).closest == err.closest


def test_empty_store_not_recorded() -> None:
    with pytest.raises(NotRecordedError, match="the store is empty"):
        ReplayChatModel(store=ReplayStore([])).invoke("anything")


def test_propose_prompt_shared_across_puzzles_is_one_queue(replay_store: ReplayStore) -> None:
    recs = [r for r in load_records("game24_tot") if r.kind == "propose"]
    by_key: dict[str, int] = {}
    for r in recs:
        by_key[r.key] = by_key.get(r.key, 0) + 1
    key = max(by_key, key=by_key.__getitem__)
    assert by_key[key] > 1
    replay_store.reset()
    first, texts = replay_store.draw([{"role": "user", "content": recs[[r.key for r in recs].index(
        key)].messages[0]["content"]}], n=by_key[key])
    assert texts == [c for r in recs if r.key == key for c in r.completions]
