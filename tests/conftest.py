"""Shared fixtures. Each fixture family lives in tests/fixtures/<name>.py."""

pytest_plugins = [
    "tests.fixtures.fakes",
    "tests.fixtures.replay",
    "tests.fixtures.otel",
    "tests.fixtures.postgres",
    "tests.fixtures.phoenix",
]
