"""``build_planner``: budget-aware value tree search as a LangGraph graph.

estimate -> plan -(budget edge)-> expand (``Send`` per node) -> value -> plan ... -> terminate

The tree is a ``DeltaChannel``: a checkpoint stores the records a step wrote, not the
tree, and LangGraph rebuilds any checkpoint's tree from them (see docs/planner.md).
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, NotRequired

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langgraph.channels import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, StateGraph
from langgraph.managed import RemainingSteps
from langgraph.types import Overwrite

from budget_graph.budget import Budget
from budget_graph.guard import guard, with_budget
from budget_graph.nodes.allocation import (
    Action,
    AllocationPolicy,
    BestFirst,
    BreadthLimitedBFS,
    PolicyView,
)
from budget_graph.nodes.edge import (
    AnytimePoint,
    PlannerEdge,
    expected_step_cost,
    remaining_units,
    search_point,
)
from budget_graph.nodes.estimator import Estimator, make_estimator_node
from budget_graph.nodes.expand import make_expand_node
from budget_graph.nodes.terminator import make_terminator
from budget_graph.nodes.tree import (
    DEFAULT_GAMMA,
    ROOT_ID,
    SearchStats,
    Tree,
    TreeNode,
    backup,
    merge_tree_updates,
)
from budget_graph.nodes.value import (
    JudgeValue,
    ValueCache,
    ValueFunction,
    VerifierValue,
    make_value_node,
)
from budget_graph.state import CHECKPOINT_TYPES, BudgetState
from budget_graph.tasks.base import Item, SearchTask

__all__ = [
    "PLANNER_CHECKPOINT_TYPES",
    "TREE_SNAPSHOT_EVERY",
    "PlannerState",
    "allow_planner_types",
    "build_planner",
    "concat_lists",
]

TREE_SNAPSHOT_EVERY = 500
"""Updates of the tree between two full copies of it in a checkpoint.

A copy costs O(tree), so it adds O(tree / 500) records per update (a planner update writes
a few to a few dozen); loading a checkpoint replays at most this many updates' writes.
"""

PLANNER_CHECKPOINT_TYPES: tuple[tuple[str, str], ...] = (
    *CHECKPOINT_TYPES,
    *(
        (t.__module__, t.__name__)
        for t in (Tree, TreeNode, SearchStats, Action, AnytimePoint, Item)
    ),
)
"""``(module, name)`` of every type :class:`PlannerState` puts in checkpoints.

``build_planner(checkpointer=...)`` registers them itself; pass them to the serializer
of a parent graph's checkpointer when the planner runs as its subgraph:
``JsonPlusSerializer(allowed_msgpack_modules=PLANNER_CHECKPOINT_TYPES)``.
"""


def concat_lists(current: list[Any], updates: Sequence[list[Any]]) -> list[Any]:
    """Batch reducer of an append-only list channel (``DeltaChannel``).

    The updates' items after the current ones, in order.
    """
    return [*current, *(item for update in updates for item in update)]


def allow_planner_types(checkpointer: Any) -> Any:
    """``checkpointer`` with a serializer that loads the planner's types without warnings.

    LangGraph's default serializer loads any type but logs "Deserializing unregistered
    type" for each; the planner's graph gets a shallow clone of the saver (same storage,
    as ``BaseCheckpointSaver.with_allowlist`` makes) whose serializer allows exactly
    :data:`PLANNER_CHECKPOINT_TYPES` (and LangGraph's safe types). A serializer with an
    allowlist of its own gets the planner's types added to it. ``None``/``True``/``False``
    are returned as they are.
    """
    if not isinstance(checkpointer, BaseCheckpointSaver):
        return checkpointer
    serde = checkpointer.serde
    # A permissive serializer (LangGraph's default: any type, with a warning) ignores any
    # allowlist it is given; adding a key no checkpoint holds tells it from a strict one.
    probe = (__name__, PlannerState.__name__)
    if type(serde) is JsonPlusSerializer and serde.with_msgpack_allowlist([probe]) is serde:
        clone = copy.copy(checkpointer)
        clone.serde = JsonPlusSerializer(
            pickle_fallback=serde.pickle_fallback,
            allowed_msgpack_modules=PLANNER_CHECKPOINT_TYPES,
        )
        return clone
    return checkpointer.with_allowlist(PLANNER_CHECKPOINT_TYPES)


class PlannerState(BudgetState):
    """State of the planning graph (the budget keys plus the tree and the result)."""

    item: Item
    """The problem being solved."""
    tree: Annotated[Tree, DeltaChannel(merge_tree_updates, snapshot_frequency=TREE_SNAPSHOT_EVERY)]
    """The search tree; branches return node records, merged by id. A checkpoint stores
    only the step's records (LangGraph rebuilds the tree from them), not the whole tree."""
    search_stats: Annotated[SearchStats, operator.add]
    """Additive counters (expansions, units) the budget edge learns costs from."""
    actions: NotRequired[list[Action]]
    """What the last plan step sent out."""
    step: NotRequired[int]
    quality: Annotated[list[float], DeltaChannel(concat_lists)]
    """Q after each step: the root's backed-up value (best path value so far). Append-only:
    a step writes its own Q, and a checkpoint stores only that."""
    budget_tokens: NotRequired[int | None]
    """The estimator's budget for this problem: output tokens (TALE), capping the search's
    generated tokens below the run budget."""
    budget_tokens_base: NotRequired[int]
    """Output tokens the run had spent when ``budget_tokens`` was set."""
    trace: Annotated[list[AnytimePoint], DeltaChannel(concat_lists)]
    """Anytime trace: the best verified answer so far after each step, with the spend.
    Append-only, stored like ``quality``."""
    remaining_steps: RemainingSteps
    best_id: NotRequired[str | None]
    solution: NotRequired[str | None]
    """Text of the best node."""
    path: NotRequired[list[str]]
    """The best node's steps from the root."""
    answer: NotRequired[str | None]
    solved: NotRequired[bool]


def build_planner(
    model: BaseChatModel,
    *,
    task: SearchTask,
    item: Item | None = None,
    budget: Budget | None = None,
    policy: AllocationPolicy | None = None,
    value: ValueFunction | None = None,
    estimator: Estimator | None = None,
    breadth: int | None = None,
    judge_model: BaseChatModel | None = None,
    judge_samples: int = 3,
    value_cache: ValueCache | None = None,
    lazy_value_at: float | None = None,
    gamma: float = DEFAULT_GAMMA,
    max_depth: int | None = None,
    stop_on_solved: bool = True,
    min_gain: float | None = None,
    patience: int = 1,
    expand_max_tokens: int | None = 1000,
    recursion_limit: int = 10_000,
    checkpointer: Any = None,
    name: str = "planner",
) -> Any:
    """Build the budget-aware tree search graph for a task.

    Args:
        model: Chat model that proposes next steps (and judges, unless ``judge_model``).
        task: A :class:`~budget_graph.tasks.base.SearchTask` (prompts, parsers, verifier).
        item: Default problem when the input has no ``item``.
        budget: Run budget; given, the result is wrapped with
            :func:`~budget_graph.with_budget` (a fresh meter per run). Leave it ``None``
            to embed the graph as a subgraph of a budgeted parent.
        policy: Allocation policy; default :class:`BestFirst`, or
            :class:`BreadthLimitedBFS` when ``breadth`` is given.
        value: Value function; default ``VerifierValue(task) | JudgeValue(...)``.
        estimator: Sets ``budget_tokens`` per problem: TALE's output tokens for a solution,
            a cap on the search's generated tokens (``budget`` caps all units).
        breadth: Tree of Thoughts breadth (selects :class:`BreadthLimitedBFS`).
        judge_model: Model for the default judge (default ``model``).
        judge_samples: Judge samples per node for the default judge.
        value_cache: Share judgements across runs (default: a cache per graph).
        lazy_value_at: Stop valuing a batch of siblings once one scores this much.
        gamma: Discount in the backup V(n) = R(n) + gamma * max V(child) (default
            :data:`~budget_graph.nodes.tree.DEFAULT_GAMMA`, 0.9 as in the reference
            implementation).
        max_depth: Depth limit (default ``task.max_depth``).
        stop_on_solved: Stop at the first verified solution (``stop_reason="solved"``).
        min_gain: ε of the relative-gain stop on the root's backed-up value
            (:class:`~budget_graph.stopping.RelativeGain`).
        patience: Low-gain steps in a row needed to stop (default 1).
        expand_max_tokens: Output cap of a propose call.
        recursion_limit: LangGraph super-step limit (3 per search step).
        checkpointer: Passed to ``compile`` (through :func:`allow_planner_types`).
        name: Graph name.

    Returns:
        A compiled ``StateGraph`` (wrapped by ``with_budget`` when ``budget`` is given).
        Invoke it with ``{"item": Item}``; the result holds ``answer``, ``solution``,
        ``path``, ``solved``, ``stop_reason``, ``spend`` and the ``tree``.

    Example:
        >>> # app = build_planner(llm, task=Game24Task(), budget=Budget(max_tokens=8_000))
        >>> # out = app.invoke({"item": task.items()[0]}); out["answer"], out["stop_reason"]

    """
    depth_limit = max_depth if max_depth is not None else int(getattr(task, "max_depth", 4))
    if policy is None:
        policy = BreadthLimitedBFS(breadth=breadth) if breadth is not None else BestFirst()
    if value is None:
        judge = JudgeValue(
            judge_model or model,
            task,
            samples=judge_samples,
            cache=value_cache if value_cache is not None else ValueCache(),
        )
        value = VerifierValue(task) | judge
    edge = PlannerEdge(stop_on_solved=stop_on_solved, min_gain=min_gain, patience=patience)
    estimate_tokens = make_estimator_node(estimator) if estimator is not None else None

    def start(state: Mapping[str, Any]) -> dict[str, Any]:
        the_item = state.get("item") or item
        if the_item is None:
            raise ValueError("build_planner needs an item: pass item=... or {'item': ...}")
        out: dict[str, Any] = {
            "item": the_item,
            "step": 0,
            "actions": [],
            "quality": Overwrite([]),  # a new run on the thread starts its own curve
        }
        if ROOT_ID not in (state.get("tree") or ()):
            out["tree"] = [TreeNode(id=ROOT_ID, reward=0.0, value=0.0)]
        if estimate_tokens is not None:
            out.update(estimate_tokens({**state, "item": the_item}))
        return out

    def plan(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        tree: Tree = state["tree"]
        last = tuple(state.get("actions") or ())
        step = int(state.get("step") or 0)
        changed = backup(tree, {a.node for a in last}, gamma=gamma) if last else []
        root = next((n for n in changed if n.id == ROOT_ID), tree.get(ROOT_ID))
        q = float(root.value or 0.0) if root else 0.0
        quality = [*(state.get("quality") or ()), q]
        remaining = remaining_units(state, config)
        stats = state.get("search_stats")
        view = PolicyView(
            tree=tree,
            last=last,
            remaining=remaining,
            expected_cost=expected_step_cost(stats, edge.prior_step_units),
            max_depth=depth_limit,
            step=step,
            spent=spend.units if (spend := state.get("spend")) is not None else 0,
        )
        selection = policy(view)
        reason = edge.check(
            state,
            actions=selection.actions,
            reason=selection.reason,
            remaining=remaining,
            quality=quality,
        )
        if reason is None and int(state.get("remaining_steps") or 0) < 4:
            reason = "steps"
        out: dict[str, Any] = {
            "tree": changed,
            "actions": [] if reason else list(selection.actions),
            "step": step + 1,
            "quality": [q],
        }
        if reason is not None:
            out["stop_reason"] = reason
        point = search_point(state, last)
        if point is not None:
            out["trace"] = [point]
        return out

    builder: StateGraph[Any] = StateGraph(PlannerState)
    builder.add_node("estimate", guard(start, name="estimate"))
    builder.add_node("plan", plan)  # type: ignore[type-var]
    builder.add_node(
        "expand",
        guard(make_expand_node(model, task, max_tokens=expand_max_tokens), name="expand"),
        destinations=("value",),
    )
    builder.add_node("value", guard(make_value_node(value, stop_at=lazy_value_at), name="value"))
    builder.add_node("terminate", make_terminator(task))  # type: ignore[arg-type]
    builder.add_edge(START, "estimate")
    builder.add_edge("estimate", "plan")
    builder.add_conditional_edges("plan", edge, ["expand", "value", "terminate"])
    builder.add_edge("value", "plan")
    builder.add_edge("terminate", END)
    graph = builder.compile(checkpointer=allow_planner_types(checkpointer), name=name).with_config(
        recursion_limit=recursion_limit
    )
    return with_budget(graph, budget) if budget is not None else graph
