"""What every signal shares: the registry, cache keys, and the small pydantic shape.

A signal is a pydantic model whose fields are its parameters and whose `name` is its stable key
(registry key, CLI word, cache namespace). Heavy work happens in methods, never at import.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from middo_core.registry import Registry

SIGNAL_NAMES: tuple[str, ...] = ("complexity", "diversity", "quality")


class Signal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str

    def params(self) -> dict[str, Any]:
        """The parameters that change computed values (part of the cache key)."""
        return self.model_dump(mode="json", exclude={"name"})


SIGNALS: Registry[Signal] = Registry("signal")


def cache_key(*parts: Any) -> str:
    """A stable 16-hex-digit key from model fingerprints, template hashes and parameters."""
    payload = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]
