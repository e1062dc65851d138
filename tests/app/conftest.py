"""Fixtures for the Studio tests."""

from __future__ import annotations

import pytest
from studio_helpers import seed_samples


@pytest.fixture
def studio_ws(workspace_factory):
    """A workspace with 300 seed samples in D(0) (one carrying HTML and markdown markup)."""
    ws = workspace_factory("studio")
    return ws, seed_samples(ws)
