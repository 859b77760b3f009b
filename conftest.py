"""Fixtures of every test suite in the checkout (tests/ and projects/*/tests/); the shared
constants and helpers are in pisl/testing.py."""
import pytest

from pisl.testing import make_synthetic


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A small synthetic dataset drawn once per test session."""
    root = str(tmp_path_factory.mktemp("datasets"))
    make_synthetic(root)
    return root
