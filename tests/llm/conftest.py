"""A real OpenAI-compatible server on loopback for each test, and a secret key in the environment."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.llm.openai_server import LoopbackOpenAI  # noqa: E402


@pytest.fixture
def loopback():
    with LoopbackOpenAI() as server:
        yield server


@pytest.fixture
def api_key(monkeypatch, loopback) -> str:
    """A fresh secret in OPENAI_API_KEY, and OPENAI_BASE_URL pointing at the loopback server."""
    key = "sk-test-" + secrets.token_hex(16)
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("OPENAI_BASE_URL", loopback.base_url)
    return key
