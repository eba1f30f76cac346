"""Kill test: SIGKILL a budgeted graph run (SQLite checkpointer on disk), resume it elsewhere.

Three processes share one thread: the first is killed while a streaming call is in flight,
the second resumes and is killed right after a step is checkpointed, the third resumes to
the end. The thread's spend must equal what the replay server billed (no call counted
twice, none lost) and stay under the budget across the kills.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from budget_graph.replay import ReplayStore
from budget_graph.replay.server import ReplayServer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
LIMIT = 2_600


class Worker:
    """A ``tests.kill_worker`` subprocess whose stdout lines can be awaited."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.kill_worker", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, prefix: str, timeout_s: float = 90) -> str:
        """The first stdout line starting with ``prefix`` (fails with stderr on exit)."""
        while True:
            try:
                line = self.lines.get(timeout=timeout_s)
            except queue.Empty:
                self.kill()
                pytest.fail(f"worker silent for {timeout_s}s waiting for {prefix!r}: {self.seen}")
            if line is None:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                pytest.fail(f"worker exited before {prefix!r}: {self.seen}\n{err[-3000:]}")
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def kill(self) -> None:
        """SIGKILL: no cleanup, no atexit, no flush."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        assert self.proc.returncode == -signal.SIGKILL

    def result(self) -> dict:
        """The worker's final ``RESULT`` line."""
        out = json.loads(self.wait_for("RESULT ").removeprefix("RESULT "))
        assert self.proc.wait(timeout=60) == 0
        return out


@pytest.fixture
def own_server() -> Iterator[ReplayServer]:
    """A server of its own: the killed client's hung request must not touch other tests."""
    server = ReplayServer(ReplayStore()).start()
    try:
        yield server
    finally:
        server.stop()


def test_sigkill_mid_call_and_mid_run_then_resume_is_exact(tmp_path, own_server) -> None:
    db = str(tmp_path / "ckpt.sqlite")
    base = ["--db", db, "--base-url", own_server.base_url, "--limit", str(LIMIT)]

    first = Worker(*base, "--hang-at-call", "3")
    first.wait_for("CALL 3")  # s2's request waits 30 s on the server: kill it in flight
    first.kill()
    assert [ln for ln in first.seen if ln.startswith("STEP")] == ["STEP s0", "STEP s1"]
    assert own_server.usage()["billed_requests"] == 2  # the killed call was never billed

    second = Worker(*base, "--resume", "--pause-after", "s3")
    second.wait_for("PAUSED")
    second.kill()
    assert [ln for ln in second.seen if ln.startswith("CALL")] == ["CALL 1 s2", "CALL 2 s3"]

    third = Worker(*base, "--resume")
    out = third.result()
    billed = own_server.usage()
    assert out["input_tokens"] == billed["prompt_tokens"]
    assert out["output_tokens"] == billed["completion_tokens"]
    assert out["calls"] == billed["billed_requests"]  # none counted twice, none lost
    steps = [s.split(":")[0] for s in out["steps"]]
    assert steps == sorted(set(steps)) and steps[:4] == ["s0", "s1", "s2", "s3"]
    # The third process's meter was rebuilt from the checkpointed spend: the cap holds.
    assert out["units"] <= LIMIT and out["meter_spent"] == out["units"]
    assert out["stop_reason"] == "budget" and out["calls"] < 6


def test_resume_under_strict_checkpoint_deserialisation(tmp_path, own_server) -> None:
    db = str(tmp_path / "ckpt.sqlite")
    base = ["--db", db, "--base-url", own_server.base_url, "--limit", "20000"]
    # One process is enough: the final state is read back from the SQLite file.
    worker = Worker(*base, env={"LANGGRAPH_STRICT_MSGPACK": "true"})
    out = worker.result()
    assert out["calls"] == 6 == own_server.usage()["billed_requests"]
    assert out["by_node_types"] == ["Usage"]
    # Strict mode allows the types it finds in the state schema; all of ours are found,
    # so none of them is blocked (and rebuilt) on the way back from the checkpoint.
    stderr = worker.proc.stderr.read() if worker.proc.stderr else ""
    assert "Blocked deserialization of budget_graph" not in stderr, stderr[-2000:]
