"""Soak: N concurrent budgeted runs against the replay server with faults on, for a while.

Each run gets its own budget and meter and streams recorded Game of 24 prompts through
``budgeted(ChatOpenAI, retry=RetryPolicy(...))`` until its budget refuses the next call.
Every request draws a fault: 429 (Retry-After), 500, 503, a connection dropped before the
first chunk (all retried), latency, or a stream dropped after text was sent (not
retryable: the run fails, deliberately, and is reported by kind). At the end the server's
billing ledger is compared with what the runs' meters counted.

Last line: ``runs=<n> failed=<k> lost_spend_tokens=<x> overshoot_tokens=<y>``; x (billed
but not counted) and y (spent beyond a run's budget) must be 0.

    python benchmarks/soak.py --seconds 60 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import httpx
import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from budget_graph import Budget, BudgetExceededError, Meter, budgeted  # noqa: E402
from budget_graph.replay.server import ReplayServer  # noqa: E402
from budget_graph.retry import RetryPolicy  # noqa: E402
from tests.reliability_helpers import PROMPTS, openai_chat  # noqa: E402

FAULTS = [
    ("429;times=1;retry-after=0.01", 2),
    ("500;times=1", 2),
    ("503;times=1", 1),
    ("drop=0;times=1", 2),
    ("latency=0.02", 2),
    ("drop=4", 1),  # deliberate, non-retryable failure
    (None, 10),
]
RETRY = RetryPolicy(max_attempts=5, initial_wait_s=0.005, max_wait_s=0.05)


async def _run(run_id: int, rng: random.Random, server: ReplayServer,
               client: httpx.AsyncClient, stats: dict) -> None:
    limit = rng.randint(1_200, 4_000)
    meter = Meter(Budget(max_tokens=limit))
    outcome = "ok"
    try:
        for call in range(100):
            spec = rng.choices([f for f, _ in FAULTS], [w for _, w in FAULTS])[0]
            chat = openai_chat(server, f"{spec};id={run_id}-{call}" if spec else None,
                               http_async_client=client)
            llm = budgeted(chat, meter=meter, retry=RETRY)
            prompt = PROMPTS[rng.randrange(len(PROMPTS))]
            try:
                _ = [c async for c in llm.astream(prompt, max_tokens=rng.randint(20, 200))]
            except BudgetExceededError:
                break  # the run's budget is spent: a normal end
    except openai.APIConnectionError:
        outcome = "dropped-mid-stream (deliberate drop=4 fault)"
    except Exception as exc:  # noqa: BLE001 - anything else is an undeliberate failure
        outcome = f"UNEXPECTED {type(exc).__name__}: {exc}"
    stats["runs"] += 1
    stats["outcomes"][outcome] += 1
    stats["spent"] += meter.spent
    stats["overshoot"] += max(meter.spent - limit, 0)
    stats["open"] += meter.open_reservations + meter.reserved


async def soak(seconds: float, concurrency: int, seed: int) -> dict:
    """Run the soak and return its stats."""
    server = ReplayServer().start()
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency * 2), timeout=60)
    stats: dict = {"runs": 0, "outcomes": Counter(), "spent": 0, "overshoot": 0, "open": 0}
    deadline = time.monotonic() + seconds
    ids = iter(range(10**9))

    async def worker(w: int) -> None:
        rng = random.Random(seed * 1000 + w)
        while time.monotonic() < deadline:
            await _run(next(ids), rng, server, client, stats)

    try:
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    finally:
        await client.aclose()
        await asyncio.sleep(0.2)  # let the server log the last dropped streams
        usage = server.usage()
        server.stop()
    stats["billed"] = usage["prompt_tokens"] + usage["completion_tokens"]
    stats["requests"] = usage["requests"]
    stats["billed_requests"] = usage["billed_requests"]
    return stats


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, soak, print the report."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="how long to run (default 60)")
    p.add_argument("--concurrency", type=int, default=16, help="concurrent runs (default 16)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.concurrency < 1:
        p.error(f"need --seconds > 0 and --concurrency >= 1 (got {args.seconds}, "
                f"{args.concurrency})")
    warnings.simplefilter("ignore")
    stats = asyncio.run(soak(args.seconds, args.concurrency, args.seed))
    failed = sum(n for k, n in stats["outcomes"].items() if k != "ok")
    lost = max(stats["billed"] - stats["spent"], 0)
    print(f"requests={stats['requests']} billed_requests={stats['billed_requests']} "
          f"billed_tokens={stats['billed']} counted_tokens={stats['spent']} "
          f"open_reservations_left={stats['open']}")
    for kind, n in sorted(stats["outcomes"].items()):
        print(f"  {n:6d}  {kind}")
    print(f"runs={stats['runs']} failed={failed} lost_spend_tokens={lost} "
          f"overshoot_tokens={stats['overshoot']}")
    unexpected = any(k.startswith("UNEXPECTED") for k in stats["outcomes"])
    ok = lost == 0 and stats["overshoot"] == 0 and stats["open"] == 0 and not unexpected
    ok = ok and stats["billed"] == stats["spent"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
