"""Recorded real LLM outputs: the replay format, a replay chat model and an OpenAI-style server."""

from budget_graph.replay.chat_model import ReplayChatModel
from budget_graph.replay.format import (
    DATASETS,
    ReplayRecord,
    data_dir,
    load_records,
    request_key,
)
from budget_graph.replay.store import (
    NotRecordedError,
    ReplayError,
    ReplayExhaustedError,
    ReplayResponse,
    ReplayStore,
)

__all__ = [
    "DATASETS",
    "NotRecordedError",
    "ReplayChatModel",
    "ReplayError",
    "ReplayExhaustedError",
    "ReplayRecord",
    "ReplayResponse",
    "ReplayStore",
    "data_dir",
    "load_records",
    "request_key",
]
