"""Shared fixtures. Each fixture family lives in tests/fixtures/<name>.py."""

from hypothesis import settings

pytest_plugins = [
    "tests.fixtures.fakes",
    "tests.fixtures.replay",
    "tests.fixtures.otel",
    "tests.fixtures.postgres",
    "tests.fixtures.phoenix",
]


# Property tests check invariants, not speed: on a loaded 2-core CI machine a single example
# can exceed hypothesis's 200 ms default deadline (seen: DeadlineExceeded in test_budget).
settings.register_profile("ci", deadline=None)
settings.load_profile("ci")
