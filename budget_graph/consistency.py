"""``build_self_consistency``: budget-aware chain-of-thought self-consistency as a LangGraph graph.

decide -(Send)-> sample -> decide ... -> finish

``decide`` tallies the votes, keeps the current best answer and its confidence in state
(anytime), asks the stop rule, and sizes the next batch: what the rule still needs, no
more than ``batch_size`` and no more than the budget pays for. ``sample`` draws one batch
through a :func:`~budget_graph.budgeted` model, as one request with the provider's ``n``
(the prompt is paid once per batch) or as ``n=1`` requests in parallel ``Send`` branches
(``parallel=True``: the prompt is paid per sample). ``finish`` returns the answer with its
``stop_reason``.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, NotRequired

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from budget_graph._internal import observe
from budget_graph._internal.sampling import (
    DEFAULT_SAMPLE_TOKENS,
    batch_fit,
    chain_estimate,
    sample_kwargs,
    sample_node,
)
from budget_graph.accounting import count_messages, count_tokens, model_name
from budget_graph.budget import Budget
from budget_graph.budgeted import budgeted
from budget_graph.context import current_meter
from budget_graph.guard import guard, with_budget
from budget_graph.nodes.estimator import Estimator
from budget_graph.nodes.expand import is_not_recorded
from budget_graph.state import BudgetState
from budget_graph.stopping import BetaPosterior, Posterior, StopRule, Votes
from budget_graph.tasks.base import Item, SampledTask

__all__ = [
    "BUDGET_PROMPT",
    "Sample",
    "SelfConsistencyState",
    "TracePoint",
    "build_self_consistency",
    "chain_estimate",
    "votes_of",
]

BUDGET_PROMPT = "{prompt}\n\n(Let's think step by step and use less than {budget} tokens.)"
"""TALE's budget-in-prompt instruction appended to the task's prompt."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One sampled reasoning chain, reduced to what the vote needs."""

    answer: str | None
    """The task extractor's answer; ``None`` if unparsable."""
    output_tokens: int
    """The chain's tokens (counted locally; the spend holds the billed usage)."""
    batch: int
    """Index of the batch that drew it (1-based)."""
    finish_reason: str | None = None
    text: str | None = None
    """The completion, when ``keep_texts=True``."""


@dataclass(frozen=True, slots=True)
class TracePoint:
    """The anytime answer after one batch."""

    output_tokens: int
    """Generated tokens spent so far in this run."""
    samples: int
    answer: str | None
    confidence: float
    input_tokens: int = 0
    """Prompt tokens spent so far in this run."""
    reasoning_tokens: int = 0
    """Hidden reasoning tokens spent so far (part of ``output_tokens``)."""


class SelfConsistencyState(BudgetState):
    """State of the self-consistency graph: the budget keys, the votes and the anytime answer."""

    item: Item
    samples: Annotated[list[Sample], operator.add]
    """Every sample drawn (branches append; merged in a deterministic order)."""
    batch: NotRequired[int]
    """Batches sent so far."""
    answer: NotRequired[str | None]
    """The current best answer: the vote's leader (ties: first seen)."""
    confidence: NotRequired[float]
    """Posterior probability that ``answer`` is the most likely answer (0.0 without votes)."""
    trace: Annotated[list[TracePoint], operator.add]
    """The anytime answer after each batch."""
    stop_rule: NotRequired[str | None]
    """The rule that stopped the run, when one did."""
    stop_statistic: NotRequired[float | None]
    """The statistic the stopping rule decided on."""
    next_batch: NotRequired[int]
    """Samples the next batch draws."""
    next_max_tokens: NotRequired[int | None]
    """Output cap of each chain of the next batch (its share of the remaining budget)."""
    sample_budget: NotRequired[int | None]
    """TALE: the per-chain token budget put in the prompt."""
    error: NotRequired[str | None]


def votes_of(samples: list[Sample]) -> Votes:
    """The :class:`Votes` of a run's samples, batch by batch."""
    votes = Votes()
    for b in sorted({s.batch for s in samples}):
        votes = votes.add([s.answer for s in samples if s.batch == b])
    return votes


def build_self_consistency(
    model: BaseChatModel,
    *,
    task: SampledTask,
    item: Item | None = None,
    budget: Budget | None = None,
    stop: StopRule | None = None,
    batch_size: int = 5,
    parallel: bool = False,
    max_samples: int = 64,
    max_tokens: int | None = None,
    sample_tokens: int | None = None,
    budget_in_prompt: bool = False,
    estimator: Estimator | None = None,
    budget_prompt: str = BUDGET_PROMPT,
    posterior: Posterior | None = None,
    unanswerable: Callable[[BaseException], bool] = is_not_recorded,
    keep_texts: bool = False,
    checkpointer: Any = None,
    name: str = "self_consistency",
) -> Any:
    """Build a self-consistency graph that samples under a budget and stops early.

    Each batch asks for the samples the stop rule still needs (at most ``batch_size``,
    at most ``max_samples`` in all) and only as many as the remaining budget pays for:
    the prompt (once per request) plus ``sample_tokens`` per chain. When not one more
    chain fits, the run ends with ``stop_reason="budget"`` and the answer so far, as it
    does when a call's reservation is refused. No call ever overshoots the budget: every
    call goes through :func:`~budget_graph.budgeted`.

    Args:
        model: Chat model that writes the reasoning chains.
        task: A :class:`~budget_graph.tasks.base.SampledTask` (``cot_prompt``,
            ``extract_answer``).
        item: Default problem when the input has no ``item``.
        budget: Run budget; given, the graph is wrapped with
            :func:`~budget_graph.with_budget` (a fresh meter per run). Leave it ``None``
            to run under a parent graph's budget, or unbudgeted.
        stop: Stop rule (see :mod:`budget_graph.stopping`); ``None`` samples until
            ``max_samples`` or the budget.
        batch_size: Most samples drawn per batch.
        parallel: Draw a batch as ``n=1`` requests in parallel ``Send`` branches instead of
            one request with the provider's ``n`` (which pays the prompt once).
        max_samples: Hard cap on samples per run (``stop_reason="samples"``).
        max_tokens: Output cap of each chain (further clamped by the budget).
        sample_tokens: Expected tokens of a chain before any is seen, to size the first
            batch; default ``max_tokens``, else 256. Later batches expect the 90th
            percentile of the chains seen so far (see :func:`chain_estimate`), and each
            chain's cap is its equal share of what is left (at most ``max_tokens``).
        budget_in_prompt: TALE: put a per-chain budget in the prompt (``budget_prompt``)
            and clamp ``max_tokens`` to it. The budget is ``estimator(item)``, else
            ``max_tokens``.
        estimator: Per-problem chain budget for ``budget_in_prompt`` (e.g.
            :class:`~budget_graph.nodes.TaleEstimator`).
        budget_prompt: Template with ``{prompt}`` and ``{budget}``.
        posterior: How ``confidence`` is computed from the vote counts (default Beta).
        unanswerable: Errors that end the run with ``stop_reason="error"`` instead of
            raising (default: a replay's ``NotRecordedError``).
        keep_texts: Keep each completion's text on its :class:`Sample`.
        checkpointer: Passed to ``compile``.
        name: Graph name.

    Returns:
        A compiled ``StateGraph`` (wrapped by ``with_budget`` when ``budget`` is given).
        Invoke it with ``{"item": Item}``; the result holds ``answer``, ``confidence``,
        ``stop_reason``, ``samples``, ``trace`` and ``spend``.

    Raises:
        ValueError: An argument is out of range (named with its value).

    Example:
        >>> # app = build_self_consistency(llm, task=DateTask(), budget=Budget(max_tokens=2_000),
        >>> #                              stop=AdaptiveConsistency(0.95))
        >>> # out = app.invoke({"item": item}); out["answer"], out["stop_reason"]

    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1 (got {max_samples})")
    for label, value in (("max_tokens", max_tokens), ("sample_tokens", sample_tokens)):
        if value is not None and value < 1:
            raise ValueError(f"{label} must be >= 1 (got {value})")
    if budget_in_prompt and estimator is None and max_tokens is None:
        raise ValueError("budget_in_prompt=True needs an estimator or max_tokens (got neither)")
    if budget_in_prompt and ("{prompt}" not in budget_prompt or "{budget}" not in budget_prompt):
        raise ValueError(
            f"budget_prompt must contain {{prompt}} and {{budget}} (got {budget_prompt!r})"
        )
    llm = budgeted(model, require_meter=False)  # unbudgeted when the graph runs without one
    llm_name = model_name(model)
    confidence_of: Posterior = posterior or BetaPosterior()

    def prompt_of(the_item: Item, chain_budget: int | None) -> str:
        prompt = task.cot_prompt(the_item)
        if budget_in_prompt and chain_budget is not None:
            return budget_prompt.format(prompt=prompt, budget=chain_budget)
        return prompt

    def chain_cap(chain_budget: int | None) -> int | None:
        caps = [c for c in (max_tokens, chain_budget if budget_in_prompt else None) if c]
        return min(caps) if caps else None

    def init(state: Mapping[str, Any]) -> dict[str, Any]:
        the_item = state.get("item") or item
        if the_item is None:
            raise ValueError("build_self_consistency needs an item: pass item=... or {'item': ...}")
        out: dict[str, Any] = {"item": the_item, "batch": 0}
        if budget_in_prompt:
            chain_budget = estimator(the_item) if estimator is not None else None
            out["sample_budget"] = chain_budget if chain_budget is not None else max_tokens
        return out

    @functools.lru_cache(maxsize=64)
    def prompt_tokens(prompt: str) -> int:
        return count_messages([HumanMessage(prompt)], model=llm_name)

    def fit_batch(
        state: Mapping[str, Any], config: RunnableConfig, want: int
    ) -> tuple[int, int | None]:
        """How many of ``want`` chains the run's budget pays for (:func:`batch_fit`)."""
        chain_budget = state.get("sample_budget")
        cap = chain_cap(chain_budget)
        meter = current_meter(config)
        run_budget: Budget | None = getattr(meter, "budget", None)
        if meter is None or run_budget is None:
            return want, cap
        return batch_fit(
            meter,
            run_budget,
            want=want,
            seen=[s.output_tokens for s in state.get("samples") or ()],
            start=sample_tokens or cap or DEFAULT_SAMPLE_TOKENS,
            cap=cap,
            prompt_tokens=prompt_tokens(prompt_of(state["item"], chain_budget)),
            parallel=parallel,
            model=llm_name,
        )

    def decide(state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        if "batch" not in state:  # first visit: set the problem up, then decide the first batch
            first = init(state)
            return {**first, **decide({**state, **first}, config)}
        samples = list(state.get("samples") or ())
        votes = votes_of(samples)
        batch = int(state.get("batch") or 0)
        answer, confidence = votes.leader, confidence_of(votes.counts)
        out: dict[str, Any] = {"answer": answer, "confidence": confidence}
        trace = state.get("trace") or ()
        if votes.n > (trace[-1].samples if trace else 0):  # a batch arrived: a new anytime point
            spend = state.get("spend")
            spent = spend.output_tokens if spend is not None else 0
            out["trace"] = [
                TracePoint(
                    spent,
                    votes.n,
                    answer,
                    confidence,
                    input_tokens=spend.input_tokens if spend is not None else 0,
                    reasoning_tokens=spend.reasoning_tokens if spend is not None else 0,
                )
            ]
        if state.get("stop_reason") in ("budget", "error"):  # a batch was refused or failed
            out.setdefault("stop_rule", state.get("stop_rule") or state["stop_reason"])
            return out
        reason, rule, statistic = None, None, None
        decision = stop(votes) if stop is not None else None
        if decision is not None and decision.stop:
            reason, rule, statistic = decision.reason, decision.rule, decision.statistic
        elif votes.n >= max_samples:
            reason, rule, statistic = "samples", "max_samples", float(votes.n)
        else:
            want = min(batch_size, max_samples - votes.n)
            if stop is not None:
                want = min(want, max(stop.needed(votes), 1))
            k, each = fit_batch(state, config, want)
            if k < 1:
                meter = current_meter(config)
                reason, rule = "budget", "budget"
                statistic = float(meter.available()) if meter is not None else None
            else:
                out["batch"] = batch + 1
                out["next_batch"] = k
                out["next_max_tokens"] = each
                return out
        observe.emit(
            "budget.early_stop",
            rule=rule,
            statistic=statistic,
            reason=reason,
            samples=votes.n,
            answer=answer,
            confidence=confidence,
            item=state["item"].id,
        )
        out.update(stop_reason=reason, stop_rule=rule, stop_statistic=statistic)
        return out

    def route(state: Mapping[str, Any]) -> Any:
        if state.get("stop_reason") is not None:
            return "finish"
        k, batch, the_item = int(state["next_batch"]), int(state["batch"]), state["item"]
        chain_budget = state.get("sample_budget")
        payload = {
            "item": the_item,
            "batch": batch,
            "prompt": prompt_of(the_item, chain_budget),
            "max_tokens": state.get("next_max_tokens", chain_cap(chain_budget)),
        }
        if parallel:
            return [Send("sample", {**payload, "n": 1}) for _ in range(k)]
        return [Send("sample", {**payload, "n": k})]

    def _samples(payload: Mapping[str, Any], result: Any) -> dict[str, Any]:
        the_item: Item = payload["item"]
        out = []
        for gen in result.generations[0]:
            text = gen.text
            reason = (gen.generation_info or {}).get("finish_reason")
            out.append(
                Sample(
                    answer=task.extract_answer(the_item, text),
                    output_tokens=count_tokens(text, model=llm_name),
                    batch=int(payload["batch"]),
                    finish_reason=reason,
                    text=text if keep_texts else None,
                )
            )
        return {"samples": out}

    def _failed(payload: Mapping[str, Any], exc: Exception) -> dict[str, Any]:
        if not unanswerable(exc):
            raise exc
        observe.emit("budget.sample_failed", item=payload["item"].id, error=type(exc).__name__)
        return {"stop_reason": "error", "error": f"{type(exc).__name__}: {exc}"[:500]}

    def sample(payload: Mapping[str, Any]) -> dict[str, Any]:
        messages: list[list[BaseMessage]] = [[HumanMessage(payload["prompt"])]]
        try:
            result = llm.generate(messages, **sample_kwargs(payload))
        except Exception as exc:  # budget refusals propagate through unanswerable to guard
            return _failed(payload, exc)
        return _samples(payload, result)

    async def asample(payload: Mapping[str, Any]) -> dict[str, Any]:
        messages: list[list[BaseMessage]] = [[HumanMessage(payload["prompt"])]]
        try:
            result = await llm.agenerate(messages, **sample_kwargs(payload))
        except Exception as exc:
            return _failed(payload, exc)
        return _samples(payload, result)

    def finish(state: SelfConsistencyState) -> dict[str, Any]:
        votes = votes_of(list(state.get("samples") or ()))
        return {
            "answer": votes.leader,
            "confidence": confidence_of(votes.counts),
            "stop_reason": state.get("stop_reason") or "converged",
        }

    builder: StateGraph[Any, Any, Any, Any] = StateGraph(SelfConsistencyState)
    builder.add_node("decide", guard(decide, name="decide"))
    builder.add_node(
        "sample", sample_node(guard(sample, name="sample"), guard(asample, name="sample"))
    )
    builder.add_node("finish", finish)
    builder.add_edge(START, "decide")
    builder.add_conditional_edges("decide", route, ["sample", "finish"])
    builder.add_edge("sample", "decide")
    builder.add_edge("finish", END)
    graph = builder.compile(checkpointer=checkpointer, name=name).with_config(
        recursion_limit=2 * max_samples + 10
    )
    return with_budget(graph, budget) if budget is not None else graph
