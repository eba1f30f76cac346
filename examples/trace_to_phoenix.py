"""Trace a budgeted planner run into Arize Phoenix and see where the tokens went.

Needs: ``pip install -e '.[bench]'`` (it includes ``[otel]``). Phoenix is optional: given
an endpoint (argument or ``$PHOENIX_COLLECTOR_ENDPOINT``), or with ``phoenix serve``
running on the default http://127.0.0.1:6006, it uses that one; else, with ``[phoenix]``
installed (about 1 GB), it starts a local Phoenix itself; else it prints the spans to the
console and says so.

    python examples/trace_to_phoenix.py [endpoint] [budget_tokens]

In Phoenix, open the project ``budget-graph``: one trace per run, node spans (estimate,
expand, value) with their rolled-up ``budget.usage.*``, LLM-call spans with
``gen_ai.usage.*`` and the budget around each call (``budget.limit/spent/remaining``).
Runs on recorded GPT-4 outputs (the replay): no API key, no network beyond localhost.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

try:
    import opentelemetry.exporter.otlp.proto.http  # noqa: F401  (the [otel] extra)
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    from budget_graph import Budget
    from budget_graph.planner import build_planner
    from budget_graph.replay import ReplayChatModel
    from budget_graph.tasks.game24 import Game24Task
    from budget_graph.telemetry import instrument, setup
except ImportError as exc:
    sys.exit(f"trace_to_phoenix.py needs {exc.name}: pip install -e '.[bench]'")

PROJECT = "budget-graph"
DEFAULT_PHOENIX = "http://127.0.0.1:6006"
STARTUP_TIMEOUT_S = 180.0


def find_phoenix() -> str | None:
    """``$BUDGET_GRAPH_PHOENIX`` (empty: none), else ``phoenix`` next to this Python or on PATH."""
    explicit = os.environ.get("BUDGET_GRAPH_PHOENIX")
    if explicit is not None:
        return explicit or None
    sibling = Path(sys.executable).parent / "phoenix"
    return str(sibling) if sibling.exists() else shutil.which("phoenix")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - localhost only
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, b""


def is_up(url: str) -> bool:
    """Whether a Phoenix answers ``GET /healthz`` at ``url``."""
    try:
        return _get(f"{url}/healthz")[0] == 200
    except OSError:
        return False


def start_phoenix(executable: str, workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``phoenix serve`` on free localhost ports (SQLite in ``workdir``); its URL."""
    port = _free_port()
    env = {
        **os.environ,
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(_free_port()),
        "PHOENIX_WORKING_DIR": workdir,
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    env.pop("PHOENIX_SQL_DATABASE_URL", None)
    log = open(Path(workdir) / "phoenix.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([executable, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        if is_up(url):
            return proc, url
        time.sleep(0.5)
    stop_phoenix(proc)
    sys.exit(f"Phoenix did not start (see {workdir}/phoenix.log); pass an endpoint instead")


def stop_phoenix(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stored_spans(url: str, project: str) -> int:
    """How many spans Phoenix holds for ``project`` (ingestion is asynchronous: poll)."""
    count = 0
    for _ in range(40):
        status, body = _get(f"{url}/v1/projects/{project}/spans?limit=1000")
        count = len(json.loads(body).get("data") or []) if status == 200 else 0
        if count:
            return count
        time.sleep(0.25)
    return count


def solve(budget_tokens: int) -> dict:
    """Solve one Game of 24 puzzle under ``budget_tokens`` on the replay; print the spend."""
    task = Game24Task()
    app = build_planner(
        ReplayChatModel(model_name="gpt-4"),
        task=task,
        budget=Budget(max_tokens=budget_tokens),
        breadth=5,
    )
    out = app.invoke({"item": task.items()[0]})
    spend = out["spend"]
    print(f"stop_reason={out['stop_reason']} answer={out['answer']!r}")
    print(
        f"spent {spend.units} of {budget_tokens} tokens in {spend.calls} calls "
        f"({spend.output_tokens} generated); per node:"
    )
    for node, usage in sorted(spend.by_node.items()):
        print(f"  {node:<10} {usage.calls:>3} calls {usage.units:>6} tokens")
    return out


def to_phoenix(url: str, budget_tokens: int, project: str) -> dict:
    """Run once with spans exported over OTLP/HTTP to the Phoenix at ``url``."""
    telemetry = setup(
        url, service_name="budget-graph-example", project=project, metrics=False, set_global=False
    )
    try:
        out = solve(budget_tokens)
    finally:
        telemetry.shutdown()  # sends the last batch
    print(f"Phoenix at {url} holds {stored_spans(url, project)} spans of project {project!r}")
    return out


def to_console(budget_tokens: int) -> dict:
    """Run once with one line per span on stdout (no Phoenix needed)."""
    provider = TracerProvider()
    exporter = ConsoleSpanExporter(
        formatter=lambda span: f"  span {span.name} {dict(span.attributes or {})}"[:160] + "\n"
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    handle = instrument(tracer_provider=provider)
    try:
        return solve(budget_tokens)
    finally:
        handle.uninstrument()
        provider.shutdown()


def main(endpoint: str | None = None, budget_tokens: int = 6_000, project: str = PROJECT) -> dict:
    """Trace one run to ``endpoint``, else to a Phoenix started here, else to the console."""
    endpoint = endpoint or os.environ.get("PHOENIX_COLLECTOR_ENDPOINT")
    if not endpoint and is_up(DEFAULT_PHOENIX):  # a `phoenix serve` already running
        endpoint = DEFAULT_PHOENIX
    if endpoint:
        return to_phoenix(endpoint.rstrip("/"), budget_tokens, project)
    executable = find_phoenix()
    if executable is None:
        print("No Phoenix found (pip install -e '.[phoenix]' adds one): spans go to the console.")
        return to_console(budget_tokens)
    with tempfile.TemporaryDirectory(prefix="phoenix-") as workdir:
        print("starting a local Phoenix (stopped when this script ends)...", flush=True)
        proc, url = start_phoenix(executable, workdir)
        try:
            out = to_phoenix(url, budget_tokens, project)
            if sys.stdin.isatty():
                input(f"open {url} (project {project!r}); press Enter to stop Phoenix ")
        finally:
            stop_phoenix(proc)
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0] if args else None, int(args[1]) if len(args) > 1 else 6_000)
