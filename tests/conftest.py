"""Shared fixtures: tiny in-process models, temporary workspaces, the optional shared data folder."""

from __future__ import annotations

import os
import subprocess
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
    """The shared data folder (real Alpaca records, not committed to the project): the one
    $MIDDO_SHARED_DIR names, else the nearest `shared/data` beside the checkout or a folder above
    it, else beside the local repository this checkout was cloned from (a clone made elsewhere
    finds it too); tests using it skip without it."""
    if "MIDDO_SHARED_DIR" in os.environ:
        candidates = [Path(os.environ["MIDDO_SHARED_DIR"]) / "data"]
    else:
        candidates = [parent / "shared" / "data" for parent in REPO.parents]
        origin = subprocess.run(["git", "-C", str(REPO), "config", "--get", "remote.origin.url"],
                                capture_output=True, text=True).stdout.strip().removeprefix("file://")
        if origin.startswith("/"):
            candidates += [parent / "shared" / "data" for parent in Path(origin).resolve().parents]
    for root in candidates:
        if root.is_dir():
            return root
    pytest.skip(f"shared data folder not present: {candidates[0]} (set MIDDO_SHARED_DIR)")


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
