"""The planner under checkpointers: checkpoints hold only what a step changed, and resume,
time travel and ``stream_mode="updates"`` see the exact tree."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.event_hooks import register_serde_event_listener
from langgraph.checkpoint.sqlite import SqliteSaver

from budget_graph import Budget
from budget_graph.nodes import Tree, ValueProportional, merge_tree_updates
from budget_graph.planner import build_planner
from budget_graph.tasks.base import Item

ROOT = Path(__file__).resolve().parents[1]
ITEM = Item(id="g", input="grid")


class HashedChat(BaseChatModel):
    """Proposes three steps; judges with a score hashed from the prompt; 40 tokens a call."""

    @property
    def _llm_type(self) -> str:
        return "hashed-fake"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        prompt = str(messages[-1].content)
        if prompt.startswith("value"):
            digest = hashlib.blake2b(prompt.encode(), digest_size=2).digest()
            text = str(1 + int.from_bytes(digest, "big") % 100)
        else:
            text = "a\nb\nc"
        usage = {"input_tokens": 20, "output_tokens": 20, "total_tokens": 40}
        msg = AIMessage(content=text, usage_metadata=usage)  # type: ignore[arg-type]
        return ChatResult(generations=[ChatGeneration(message=msg)])


class GridTask:
    """Every state has three children, down to depth 3; the answer is a state's last step."""

    name = "grid"

    def __init__(self, max_depth: int = 3) -> None:
        self.max_depth = max_depth

    def items(self) -> list[Item]:
        return [ITEM]

    def cot_prompt(self, item: Item) -> str:
        return item.input

    def extract_answer(self, item: Item, completion: str) -> str | None:
        return None

    def is_correct(self, item: Item, answer: str | None) -> bool:
        return False

    def propose_prompt(self, item: Item, state: str) -> str:
        return f"propose {state}"

    def parse_proposals(self, item: Item, state: str, completion: str) -> list[str]:
        return [f"{state}{line}/" for line in completion.split("\n")]

    def value_prompt(self, item: Item, state: str) -> str:
        return f"value {state}"

    def parse_value(self, item: Item, state: str, completion: str) -> float | None:
        return float(completion)

    def verify(self, item: Item, state: str) -> bool:
        return False

    def answer(self, item: Item, state: str) -> str | None:
        return state.rstrip("/").rsplit("/", 1)[-1] or None


def make_app(checkpointer: Any, depth: int = 3) -> Any:
    """The searched graph: every node of a 3-ary tree (40 nodes at depth 3), 3 per step."""
    return build_planner(
        HashedChat(),
        task=GridTask(depth),
        budget=Budget(max_tokens=10**6),
        policy=ValueProportional(width=3),
        judge_samples=1,
        stop_on_solved=False,
        checkpointer=checkpointer,
    )


def summary(out: dict[str, Any]) -> dict[str, Any]:
    """What must match between two runs: every tree record, the answer, the spend."""
    tree: Tree = out["tree"]
    return {
        "tree": sorted(repr(n) for n in tree.values()),
        "answer": out["answer"],
        "path": out["path"],
        "stop_reason": out["stop_reason"],
        "units": out["spend"].units,
    }


def resume_in_this_process(db: str, thread_id: str, checkpoint_id: str) -> None:
    """Child process: resume the thread from ``checkpoint_id``; print the summary as JSON."""
    conn = sqlite3.connect(db, check_same_thread=False)
    app = make_app(SqliteSaver(conn))
    cfg = {"configurable": {"thread_id": thread_id, "checkpoint_id": checkpoint_id}}
    print(json.dumps(summary(app.invoke(None, cfg))))


def test_resume_in_a_new_process_from_a_mid_search_checkpoint(tmp_path: Path) -> None:
    db = str(tmp_path / "ckpt.db")
    app = make_app(SqliteSaver(sqlite3.connect(db, check_same_thread=False)))
    cfg = {"configurable": {"thread_id": "t"}}
    full = app.invoke({"item": ITEM}, cfg)
    full_id = app.get_state(cfg).config["configurable"]["checkpoint_id"]
    assert len(full["tree"]) == 40 and full["stop_reason"] in {"depth", "exhausted"}
    # A checkpoint halfway through, taken before a plan step (the search goes on from it).
    history = list(app.get_state_history(cfg))
    mids = [s for s in history if s.next == ("plan",) and 10 <= len(s.values["tree"]) <= 30]
    assert mids
    mid = mids[len(mids) // 2]
    mid_id = mid.config["configurable"]["checkpoint_id"]
    code = (
        "from tests.test_planner_checkpoints import resume_in_this_process as r; "
        f"r({db!r}, 't', {mid_id!r})"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    resumed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert resumed == json.loads(json.dumps(summary(full)))
    assert "Deserializing unregistered type" not in proc.stderr
    # The fork's first checkpoint holds a full copy of the tree; its last is that copy plus
    # the writes after it, loaded here from the file the child wrote.
    forked = app.get_state(cfg)
    assert forked.config["configurable"]["checkpoint_id"] != full_id
    assert forked.values["tree"] == full["tree"] and forked.values["answer"] == full["answer"]


def test_time_travel_sees_each_checkpoints_own_tree() -> None:
    app = make_app(InMemorySaver())
    size = 40
    cfg = {"configurable": {"thread_id": "t"}}
    stream = app.stream({"item": ITEM}, cfg, stream_mode="values")
    seen = [dict(s["tree"].items()) for s in stream if "tree" in s]
    # One checkpoint per step (the input checkpoint, step -1, precedes the first value).
    history = [s for s in app.get_state_history(cfg) if s.metadata["step"] >= 0][::-1]
    trees = [dict(s.values.get("tree", {}).items()) for s in history]
    assert len(trees) >= 10 and len(trees[-1]) == size
    # The trees of the checkpoints, oldest first, are the trees the run went through.
    assert trees == seen
    # Going back to a checkpoint shows that checkpoint's tree, not the latest one.
    early = history[len(history) // 3]
    again = app.get_state(early.config).values["tree"]
    assert dict(again.items()) == dict(early.values["tree"].items())
    assert 0 < len(again) < size


def test_updates_stream_every_step_and_their_tree_records_rebuild_the_tree() -> None:
    app = make_app(InMemorySaver())
    cfg = {"configurable": {"thread_id": "t"}}
    writes: list[Any] = []
    nodes = []
    for event in app.stream({"item": ITEM}, cfg, stream_mode="updates"):
        for node, update in event.items():
            nodes.append(node)
            if update and "tree" in update:
                writes.append(update["tree"])
    assert nodes[0] == "estimate" and nodes[-1] == "terminate"
    assert nodes.count("expand") == 13  # every expansion of a 40-node, 3-ary tree
    final = app.get_state(cfg).values["tree"]
    assert merge_tree_updates(Tree(), writes) == final


def test_checkpoints_store_step_records_not_the_tree() -> None:
    saver = InMemorySaver()
    app = make_app(saver)
    cfg = {"configurable": {"thread_id": "t"}}
    app.invoke({"item": ITEM}, cfg)
    # InMemorySaver keeps one blob per (channel, version) a checkpoint wrote: the tree's
    # are empty markers (fewer tree updates than DeltaChannel's snapshot interval); its
    # records are the steps' writes.
    tree_blobs = [blob for key, blob in saver.blobs.items() if key[2] == "tree"]
    assert len(tree_blobs) >= 13 and all(kind == "empty" for kind, _ in tree_blobs)
    assert any(
        key[2] == "search_stats" and kind != "empty" for key, (kind, _) in saver.blobs.items()
    )
    tree_writes = [w for writes in saver.writes.values() for w in writes.values() if w[1] == "tree"]
    assert len(tree_writes) >= 13


def test_no_unregistered_type_is_deserialized(caplog: pytest.LogCaptureFixture) -> None:
    events: list[Any] = []
    unregister = register_serde_event_listener(events.append)
    try:
        with caplog.at_level(logging.WARNING):
            app = make_app(InMemorySaver())
            cfg = {"configurable": {"thread_id": "t"}}
            app.invoke({"item": ITEM}, cfg)
            states = list(app.get_state_history(cfg))
            app.invoke(
                None,
                {
                    "configurable": {
                        **cfg["configurable"],
                        **states[len(states) // 2].config["configurable"],
                    }
                },
            )
    finally:
        unregister()
    assert states and events == []
    assert "unregistered type" not in caplog.text and "Blocked deserialization" not in caplog.text


def test_allow_planner_types_keeps_a_savers_own_allowlist_and_storage() -> None:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from budget_graph.nodes import TreeNode
    from budget_graph.planner import PLANNER_CHECKPOINT_TYPES, allow_planner_types

    mine = ("decimal", "Context")
    saver = InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=[mine]))
    allowed = allow_planner_types(saver)
    assert allowed is not saver and allowed.storage is saver.storage
    node = TreeNode(id="0.1", parent="0", depth=1, text="t/")
    events: list[Any] = []
    unregister = register_serde_event_listener(events.append)
    try:
        assert allowed.serde.loads_typed(allowed.serde.dumps_typed(node)) == node
        # The saver's own serializer still blocks the planner's types; its clone does not.
        saver.serde.loads_typed(saver.serde.dumps_typed(node))
    finally:
        unregister()
    assert [e["kind"] for e in events] == ["msgpack_blocked"]
    # A saver that already allows them (and more) is used as it is.
    both = InMemorySaver(
        serde=JsonPlusSerializer(allowed_msgpack_modules=[mine, *PLANNER_CHECKPOINT_TYPES])
    )
    assert allow_planner_types(both) is both
    default = allow_planner_types(InMemorySaver())
    assert default.serde.loads_typed(default.serde.dumps_typed(node)) == node
    assert allow_planner_types(None) is None and set(PLANNER_CHECKPOINT_TYPES) >= {
        ("budget_graph.nodes.tree", "TreeNode"),
        ("budget_graph.budget", "Spend"),
    }


@pytest.mark.postgres
@pytest.mark.integration
def test_postgres_saver_restores_every_checkpoints_tree(postgres_conninfo: str) -> None:
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row

    with psycopg.connect(
        postgres_conninfo, autocommit=True, prepare_threshold=0, row_factory=dict_row
    ) as conn:
        saver = PostgresSaver(conn)  # type: ignore[arg-type]
        saver.setup()
        app = make_app(saver)
        cfg = {"configurable": {"thread_id": "pg"}}
        seen = [
            dict(s.get("tree", {}).items())
            for s in app.stream({"item": ITEM}, cfg, stream_mode="values")
        ]
        history = [s for s in app.get_state_history(cfg) if s.metadata["step"] >= 0][::-1]
        assert [dict(s.values.get("tree", {}).items()) for s in history] == seen
        # Resume from a mid-search checkpoint (a fork) finishes with the same tree (a new
        # graph: the first one's judge cache would answer the judge calls for free).
        mid = next(s for s in history if s.next == ("plan",) and len(s.values["tree"]) >= 13)
        app = make_app(saver)
        out = app.invoke(None, mid.config)
        assert out["tree"] == history[-1].values["tree"] and len(out["tree"]) == 40
        assert app.get_state(cfg).values["tree"] == out["tree"]


async def test_async_runs_restore_the_same_trees() -> None:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with AsyncSqliteSaver.from_conn_string(":memory:") as saver:
        app = make_app(saver)
        cfg = {"configurable": {"thread_id": "a"}}
        full = await app.ainvoke({"item": ITEM}, cfg)
        history = [s async for s in app.aget_state_history(cfg)]
        mid = next(s for s in history if s.next == ("plan",) and 13 <= len(s.values["tree"]) < 40)
        resumed = await make_app(saver).ainvoke(None, mid.config)
    assert len(full["tree"]) == 40 and summary(resumed) == summary(full)
