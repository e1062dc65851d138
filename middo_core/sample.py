"""The one in-memory shape of an SFT sample, and its content hash (the sample id)."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, Field

Origin = Literal["seed", "simplified", "improved", "augmented", "edited"]
ORIGINS: tuple[str, ...] = ("seed", "simplified", "improved", "augmented", "edited")


class Sample(BaseModel):
    """An instruction/response pair; earlier turns of a conversation live in `history`.

    `history` is a list of [user, assistant] pairs that precede the final turn, the
    convention of Alpaca-with-history (LLaMA-Factory), so multi-turn conversations
    survive import and export intact.
    """

    instruction: str
    input: str = ""
    output: str
    system: str = ""
    history: list[tuple[str, str]] = Field(default_factory=list)

    @property
    def id(self) -> str:
        return content_hash(self.system, self.history, self.instruction, self.input, self.output)

    @property
    def prompt(self) -> str:
        """Instruction and input as one user message."""
        return f"{self.instruction}\n\n{self.input}" if self.input else self.instruction

    def messages(self, with_response: bool = True) -> list[dict[str, str]]:
        """OpenAI-style messages: system, history turns, the final user turn, its response."""
        msgs: list[dict[str, str]] = []
        if self.system:
            msgs.append({"role": "system", "content": self.system})
        for user, assistant in self.history:
            msgs.append({"role": "user", "content": user})
            msgs.append({"role": "assistant", "content": assistant})
        msgs.append({"role": "user", "content": self.prompt})
        if with_response:
            msgs.append({"role": "assistant", "content": self.output})
        return msgs


def content_hash(system: str, history: list, instruction: str, input: str, output: str) -> str:
    """Stable 16-hex-digit id from the sample's text; equal text gives an equal id."""
    payload = json.dumps(
        [system, [list(t) for t in history], instruction, input, output],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]
