"""The planner through the real client stack: ChatOpenAI against the replay HTTP server."""

import pytest
from langchain_openai import ChatOpenAI

from budget_graph import Budget
from budget_graph.bench.game24 import game24_reward
from budget_graph.nodes import BestFirst, JudgeValue, RewardValue, ValueCache, VerifierValue
from budget_graph.planner import build_planner
from budget_graph.tasks.game24 import VALUE_MAP, Game24Task

pytestmark = pytest.mark.integration


def test_planner_over_http_spend_equals_server_billing(replay_server_clean):
    task = Game24Task()
    item = next(i for i in task.items() if i.id == "901")
    llm = ChatOpenAI(base_url=replay_server_clean.base_url, api_key="replay", model="gpt-4",
                     max_retries=0)
    value = (VerifierValue(task) | RewardValue(game24_reward)
             | JudgeValue(llm, task, samples=3, cache=ValueCache()))
    app = build_planner(llm, task=task, budget=Budget(max_tokens=20_000), value=value,
                        policy=BestFirst(expand_at=VALUE_MAP["sure"]),
                        lazy_value_at=VALUE_MAP["sure"])
    out = app.invoke({"item": item})
    billed = replay_server_clean.usage()
    assert out["solved"] and out["stop_reason"] == "solved"
    assert out["spend"].input_tokens == billed["prompt_tokens"]
    assert out["spend"].output_tokens == billed["completion_tokens"]
    assert out["spend"].units <= 20_000
