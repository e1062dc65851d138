"""Shared fixtures: tiny in-process models, temporary workspaces, the optional shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _offline_env(tmp_path_factory):
    # No hub here: fail fast instead of waiting on the network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The optional shared data folder (real Alpaca records); tests using it skip without it."""
    root = Path(os.environ.get("MIDDO_SHARED_DIR", REPO.parent / "shared")) / "data"
    if not root.is_dir():
        pytest.skip(f"shared data folder not present: {root}")
    return root


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """Path of a random ~3M-parameter Llama with the SmolLM2 tokenizer (built once per session)."""
    from middo_core.models.loader import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny"))


@pytest.fixture(scope="session")
def tiny_model_b(tmp_path_factory) -> str:
    """A second tiny model with other weights (a stand-in for a fine-tuned checkpoint)."""
    from middo_core.models.loader import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny_b", seed=1))


@pytest.fixture
def workspace_factory(tmp_path):
    """Create fresh workspaces under tmp_path: ws = workspace_factory("name", base_model=...).

    Canaries are off unless a test asks for them (canaries={"enabled": True}): the other tests
    count the model's passes over their samples exactly. Refinement runs on the local backend
    unless a test names another: `auto` would start a vLLM server of each test's tiny model."""
    from middo_core.config import WorkspaceConfig
    from middo_core.workspace import init_workspace

    def make(name: str = "ws", **config):
        config.setdefault("canaries", {"enabled": False})
        if isinstance(config.setdefault("refine", {}), dict):
            config["refine"].setdefault("backend", "local")
        return init_workspace(tmp_path / name, WorkspaceConfig(name=name, **config))

    return make


@pytest.fixture
def loopback():
    """A real OpenAI-compatible chat-completions server on loopback (tests/llm/openai_server.py)."""
    from tests.llm.openai_server import LoopbackOpenAI

    with LoopbackOpenAI() as server:
        yield server


@pytest.fixture
def api_key(monkeypatch, loopback) -> str:
    """A fresh secret in OPENAI_API_KEY, and OPENAI_BASE_URL pointing at the loopback server."""
    import secrets

    key = "sk-test-" + secrets.token_hex(16)
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("OPENAI_BASE_URL", loopback.base_url)
    return key
