"""Shared fixtures. Each area keeps its fixtures in tests/fixtures/<area>.py."""

pytest_plugins = [
    "tests.fixtures.broker",
    "tests.fixtures.databases",
    "tests.fixtures.common",
    "tests.fixtures.search",
    "tests.fixtures.auth",
]
