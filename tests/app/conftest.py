"""Fixtures for the Studio tests."""

from __future__ import annotations

import pytest
from browser import chromium_missing
from studio_helpers import seed_samples


@pytest.fixture
def studio_ws(workspace_factory):
    """A workspace with 300 seed samples in D(0) (one carrying HTML and markdown markup)."""
    ws = workspace_factory("studio")
    return ws, seed_samples(ws)


@pytest.fixture(scope="session")
def browser_ready():
    """Skips a browser test, with the reason, where Chromium or Playwright is missing."""
    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
