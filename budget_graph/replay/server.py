"""An HTTP server replaying recorded completions (``budget-graph serve-replay``).

It speaks three chat APIs, so their LangChain clients run against it unchanged:

- OpenAI chat completions, ``/v1/chat/completions`` (JSON or SSE streaming with
  ``stream_options.include_usage``, ``n``, ``max_tokens``/``max_completion_tokens``,
  ``stop``): ``ChatOpenAI(base_url=f"{url}/v1", api_key="replay", model="gpt-4")``;
- Anthropic Messages, ``/v1/messages`` (SSE streaming, usage in ``message_start`` and
  ``message_delta``): ``ChatAnthropic(base_url=url, api_key="replay", model=...)``;
- Ollama chat, ``/api/chat`` (NDJSON streaming, ``options.num_predict``, usage as
  ``prompt_eval_count``/``eval_count``): ``ChatOllama(base_url=url, model=...)``;
- Groq's OpenAI-compatible ``/openai/v1/chat/completions`` (streamed usage in
  ``x_groq.usage``): ``ChatGroq(base_url=url, api_key="replay", model=...)``.

Plus ``/v1/models``. Test endpoints: ``GET /v1/replay/usage`` (what the server billed),
``POST /v1/replay/reset``, ``POST /v1/replay/faults``. Faults: see ``faults.py``.

Billing: a request is billed (its prompt once plus every served completion token) when its
full response was sent. Faulted requests (429/500) draw nothing and bill nothing. A dropped
stream is *not* billed: the client never received the usage, so, as for the client, the
call failed; its ledger entry keeps the tokens it would have cost (``billed: false``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from budget_graph._internal.cli_args import Parser, UsageError, add_serve_args
from budget_graph.replay.faults import FAULT_HEADER, Fault, FaultBook, parse_fault
from budget_graph.replay.format import DATASETS
from budget_graph.replay.ledger import BillingEntry, Ledger, guarded
from budget_graph.replay.protocols import PROTOCOLS, Protocol
from budget_graph.replay.store import NotRecordedError, ReplayError, ReplayStore
from budget_graph.replay.wire import InvalidFieldError

__all__ = ["BillingEntry", "ReplayServer", "create_app", "main", "serve", "serve_from_args"]


def _error(
    status: int,
    message: str,
    *,
    code: str,
    protocol: Protocol | None = None,
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> Any:
    from starlette.responses import JSONResponse

    body = (protocol or PROTOCOLS["openai"]).error(status, message, code, param)
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(store: ReplayStore | None = None, *, fault: Fault | None = None) -> Any:
    """The Starlette app; ``app.state`` holds ``store``, ``faults`` (``FaultBook``), ``ledger``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    store = store or ReplayStore()
    faults = FaultBook(fault)
    ledger = Ledger()
    ids = itertools.count(1)
    prefixes = {
        "openai": "chatcmpl-replay-",
        "anthropic": "msg_replay_",
        "ollama": "ollama-",
        "groq": "chatcmpl-groq-",
    }

    async def serve_chat(request: Request, protocol: Protocol) -> Response:
        rid = f"{prefixes[protocol.name]}{next(ids)}"
        try:
            body = await request.json()
            fault_spec = faults.pick(request.headers.get(FAULT_HEADER))
        except (ValueError, json.JSONDecodeError) as exc:
            return _error(400, f"Invalid request: {exc}", code="invalid_request", protocol=protocol)
        if fault_spec and fault_spec.latency_s:
            await asyncio.sleep(fault_spec.latency_s)
        if fault_spec and fault_spec.status:
            ledger.add(
                BillingEntry(rid, fault_spec.status, False, reason="fault", protocol=protocol.name)
            )
            if fault_spec.status == 429:
                return _error(
                    429,
                    "Rate limit reached (injected by the replay server)",
                    code="rate_limit_exceeded",
                    protocol=protocol,
                    headers={
                        "Retry-After": f"{fault_spec.retry_after_s:g}",
                        "retry-after-ms": f"{fault_spec.retry_after_s * 1000:g}",
                    },
                )
            return _error(
                fault_spec.status,
                "Server error (injected by the replay server)",
                code="server_error",
                protocol=protocol,
            )
        try:
            req = protocol.parse(body if isinstance(body, dict) else {})
        except (TypeError, ValueError) as exc:
            param = exc.param if isinstance(exc, InvalidFieldError) else None
            return _error(400, str(exc), code="invalid_request", protocol=protocol, param=param)
        seen: dict[str, Any] = {
            "protocol": protocol.name,
            "max_tokens": req.max_tokens,
            "cap_param": req.cap_param,
            "model": req.model,
        }
        try:
            resp = store.complete(req.messages, n=req.n, max_tokens=req.max_tokens, stop=req.stop)
        except NotRecordedError as exc:
            ledger.add(BillingEntry(rid, 400, False, reason="not_recorded", **seen))
            return _error(400, str(exc), code="not_recorded", protocol=protocol)
        except (ReplayError, ValueError) as exc:
            ledger.add(BillingEntry(rid, 400, False, reason="replay_error", **seen))
            return _error(400, str(exc), code="replay_error", protocol=protocol)
        model = str(req.model or resp.model)
        drop = fault_spec.drop_after_chunks if fault_spec else None
        entry = BillingEntry(
            rid, 200, True, resp.prompt_tokens, resp.completion_tokens, stream=req.stream, **seen
        )
        if req.stream:
            events = protocol.events(rid, model, resp, req)
            return StreamingResponse(
                guarded(events, drop, entry, ledger), media_type=protocol.stream_media_type
            )
        payload = json.dumps(protocol.body(rid, model, resp)).encode()
        if drop is not None:
            halves = [payload[: len(payload) // 2], payload[len(payload) // 2 :]]
            return StreamingResponse(
                guarded(halves, 1, entry, ledger), media_type="application/json"
            )
        ledger.add(entry)
        return Response(payload, media_type="application/json")

    async def chat_completions(request: Request) -> Response:
        return await serve_chat(request, PROTOCOLS["openai"])

    async def groq_chat(request: Request) -> Response:
        return await serve_chat(request, PROTOCOLS["groq"])

    async def anthropic_messages(request: Request) -> Response:
        return await serve_chat(request, PROTOCOLS["anthropic"])

    async def ollama_chat(request: Request) -> Response:
        return await serve_chat(request, PROTOCOLS["ollama"])

    async def models(request: Request) -> Response:
        names = sorted({"replay", "gpt-4", "code-davinci-002"})
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "replay"} for n in names]
        return JSONResponse({"object": "list", "data": data})

    async def usage(request: Request) -> Response:
        return JSONResponse(ledger.summary())

    async def reset(request: Request) -> Response:
        store.reset()
        ledger.clear()
        faults.clear()
        return JSONResponse({"ok": True})

    async def inject(request: Request) -> Response:
        spec = await request.json()
        try:
            count = int(spec.pop("count", 1))
            faults.inject(parse_fault(spec["spec"]) if "spec" in spec else Fault(**spec), count)
        except (TypeError, ValueError, KeyError) as exc:
            return _error(400, f"Invalid fault: {exc}", code="invalid_fault")
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/openai/v1/chat/completions", groq_chat, methods=["POST"]),
            Route("/v1/messages", anthropic_messages, methods=["POST"]),
            Route("/api/chat", ollama_chat, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/replay/usage", usage, methods=["GET"]),
            Route("/v1/replay/reset", reset, methods=["POST"]),
            Route("/v1/replay/faults", inject, methods=["POST"]),
        ]
    )
    app.state.store, app.state.faults, app.state.ledger = store, faults, ledger
    return app


class ReplayServer:
    """A replay server running in a background thread (for tests, benchmarks, notebooks).

    Args:
        store: The ``ReplayStore`` to serve (default: every shipped dataset).
        host: Interface to bind.
        port: Port (0 picks a free one; read ``port``/``base_url`` after ``start()``).
        fault: Fault applied to every request without a header fault.

    Example:
        >>> with ReplayServer() as server:  # doctest: +SKIP
        ...     llm = ChatOpenAI(base_url=server.base_url, api_key="replay", model="gpt-4")

    """

    def __init__(
        self,
        store: ReplayStore | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        fault: Fault | None = None,
    ) -> None:
        self.app = create_app(store, fault=fault)
        self.host, self.port = host, port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (``http://host:port/v1``)."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        """The server's root URL (``http://host:port``): Anthropic's and Ollama's base URL."""
        return f"http://{self.host}:{self.port}"

    @property
    def store(self) -> ReplayStore:
        """The store being served."""
        return self.app.state.store  # type: ignore[no-any-return]

    @property
    def faults(self) -> FaultBook:
        """The server's fault book (``inject()`` faults for the next requests)."""
        return self.app.state.faults  # type: ignore[no-any-return]

    def usage(self) -> dict[str, Any]:
        """What the server billed so far (same as ``GET /v1/replay/usage``)."""
        return self.app.state.ledger.summary()  # type: ignore[no-any-return]

    def reset(self) -> None:
        """Rewind cursors, clear the ledger and the faults."""
        self.store.reset()
        self.app.state.ledger.clear()
        self.faults.clear()

    def start(self, timeout_s: float = 30.0) -> ReplayServer:
        """Start serving in a daemon thread; returns when the socket listens."""
        import uvicorn

        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            log_level="critical",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="replay-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"Replay server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    datasets: Sequence[str] | None = None,
    seed: int | None = None,
    on_exhausted: str = "cycle",
    fault: Fault | None = None,
    log_level: str = "info",
) -> None:
    """Serve the replay API in the foreground until interrupted."""
    import uvicorn

    store = ReplayStore(datasets, seed=seed, on_exhausted=on_exhausted)  # type: ignore[arg-type]
    uvicorn.run(create_app(store, fault=fault), host=host, port=port, log_level=log_level)


def serve_from_args(args: argparse.Namespace) -> int:
    """Serve as ``budget-graph serve-replay`` was asked to (bad input raises ``UsageError``)."""
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0..65535 (got {args.port})")
    bad = [d for d in args.datasets or () if d not in DATASETS]
    if bad:
        raise UsageError(f"unknown --datasets {bad}; valid: {', '.join(DATASETS)}")
    try:
        fault = parse_fault(args.fault) if args.fault else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    serve(
        args.host,
        args.port,
        datasets=args.datasets,
        seed=args.seed,
        on_exhausted=args.on_exhausted,
        fault=fault,
        log_level=args.log_level,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m budget_graph.replay.server [--port 8000] ...``: ``budget-graph serve-replay``."""
    parser = Parser(prog="budget-graph serve-replay")
    add_serve_args(parser)
    args = list(sys.argv[1:] if argv is None else argv)
    parsed = parser.parse_args(args[1:] if args[:1] == ["serve-replay"] else args)
    try:
        return serve_from_args(parsed)
    except UsageError as exc:
        print(f"budget-graph serve-replay: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
