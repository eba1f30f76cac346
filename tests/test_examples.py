"""Every script in examples/ runs as written; README's offline snippet runs (#24).

The scripts run side by side as subprocesses (each is mostly import time), so the whole
directory costs about as much wall time as its slowest script.
"""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.phoenix import find_phoenix

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
UNREGISTERED = "Deserializing unregistered type"

# What each script must print (it ran to its end and said something true).
EXPECTED = {
    "agent_token_budget.py": [
        "['tools', 'tools', 'no tools']",  # finalize: the last call is made without tools
        "resumed with run_limit=2000",
        "never more",
    ],
    # Issue #19 observation 10: both ended with stop_reason None.
    "existing_graph.py": ["stop_reason: budget", "of 2000 tokens"],
    "langgraph_agent_budget.py": ["overshoot=0", "stop_reason=budget", "Toulouse was not checked"],
    "planner_game24.py": ["solved: True", "of 20000 tokens", "overshoot=0"],
    "self_consistency_date.py": ["stopped sampling: Adaptive-Consistency", "chains sampled"],
    "trace_to_phoenix.py": ["stop_reason=budget", "per node:"],
}


def test_every_example_is_listed():
    assert sorted(p.name for p in EXAMPLES) == sorted(EXPECTED)


def test_every_example_states_what_it_needs():
    for path in EXAMPLES:
        docstring = path.read_text().split('"""')[1]
        assert "Needs:" in docstring, f"{path.name}: its docstring does not say what it needs"


@pytest.fixture
def phoenix_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment for trace_to_phoenix.py: the session's Phoenix when there is one.

    Without Phoenix the script falls back to printing spans, which is what a venv made with
    README's main command (no ``[phoenix]``) does.
    """
    if find_phoenix() is None:
        return {"BUDGET_GRAPH_PHOENIX": ""}
    server = request.getfixturevalue("phoenix_server")
    return {"PHOENIX_COLLECTOR_ENDPOINT": server.base_url}


@pytest.mark.integration
def test_every_example_exits_0_without_warnings(phoenix_env, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **phoenix_env}
    procs = {}
    for path in EXAMPLES:
        log = (tmp_path / f"{path.stem}.out").open("w"), (tmp_path / f"{path.stem}.err").open("w")
        procs[path.name] = (
            subprocess.Popen(
                [sys.executable, str(path)],
                cwd=tmp_path,  # as from any directory
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log[0],
                stderr=log[1],
            ),
            log,
        )
    failures = []
    for name, (proc, log) in procs.items():
        code = proc.wait(timeout=280)
        for f in log:
            f.close()
        out = Path(log[0].name).read_text()
        err = Path(log[1].name).read_text()
        if code != 0 or UNREGISTERED in err or "Traceback" in err:
            failures.append(f"{name}: exit {code}\n{err[-2000:]}")
            continue
        missing = [needle for needle in EXPECTED[name] if needle not in out]
        if missing:
            failures.append(f"{name}: output lacks {missing}:\n{out[-2000:]}")
    assert not failures, "\n\n".join(failures)
    trace_out = (tmp_path / "trace_to_phoenix.out").read_text()
    if "PHOENIX_COLLECTOR_ENDPOINT" in phoenix_env:
        held = re.search(r"holds (\d+) spans", trace_out)
        assert held and int(held.group(1)) > 0, trace_out
    else:
        assert trace_out.startswith("No Phoenix found"), trace_out
        assert "  span planner " in trace_out  # the run span, printed by the console exporter


@pytest.mark.parametrize(
    ("script", "blocked"),
    [
        ("agent_token_budget.py", "langchain.agents"),  # the [agents] extra
        ("trace_to_phoenix.py", "opentelemetry.exporter.otlp.proto.http"),  # the [otel] extra
        ("planner_game24.py", "budget_graph.bench.game24"),
        ("langgraph_agent_budget.py", "langgraph.prebuilt"),
    ],
)
def test_a_missing_dependency_exits_with_a_one_line_hint(script, blocked, monkeypatch):
    # The exact module the script imports (a cached submodule would not see its parent go).
    monkeypatch.setitem(sys.modules, blocked, None)  # "import of ... halted"
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(ROOT / "examples" / script), run_name="__main__")
    hint = exc.value.code
    assert isinstance(hint, str) and "\n" not in hint, hint
    assert f"{script} needs {blocked}" in hint and "pip install -e '.[bench]'" in hint


def _readme_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Thirty seconds", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_snippet_runs_offline_against_the_replay_server(capsys):
    offline, real = _readme_blocks()
    assert 'api_key="unused"' in offline and "ReplayServer" in offline
    exec(compile(offline, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "05/01/2021" in out  # the recorded answer came back over HTTP
    spent = re.search(r"spent (\d+) of 5000 tokens", out)
    assert spent and 0 < int(spent.group(1)) <= 5000, out
    # The real-provider version needs a key: compile it, do not call OpenAI.
    assert "OPENAI_API_KEY" in real
    compile(real, "README.md", "exec")
