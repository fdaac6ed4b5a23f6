"""Shared pytest configuration: real servers on loopback, started by fixtures."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.s3",
    "tests.fixtures.kafka",
    "tests.fixtures.skypacs",
]
