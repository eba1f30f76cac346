"""Session-scoped pieces of the conformance matrix: one replay server, one Postgres database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conformance.matrix import Env


@pytest.fixture(scope="session")
def conformance_pg(postgres_server) -> str:
    """One database for every conformance cell, LangGraph's checkpoint tables created once."""
    from langgraph.checkpoint.postgres import PostgresSaver

    conninfo = postgres_server.create_database("conformance")
    with PostgresSaver.from_conn_string(conninfo) as saver:
        saver.setup()
    return conninfo


@pytest.fixture(scope="session")
def conformance_env(tmp_path_factory, replay_server, conformance_pg) -> Iterator[Env]:
    """The servers and scratch directory every cell shares (threads are unique per cell)."""
    yield Env(
        tmp=Path(tmp_path_factory.mktemp("conformance")),
        replay=replay_server,
        pg_conninfo=conformance_pg,
    )
