"""Fixtures shared across test modules."""

from tests.fake_github import fake_github  # noqa: F401 - a fixture, used by name
