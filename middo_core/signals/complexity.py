"""Complexity ("loss patterns"): mean NLL of the response tokens given the prompt.

L_pre comes from the base model and L_post from the model fine-tuned on the dataset version; a
sample is hard when both are high. Both are shared loss passes (middo_core.signals.passes): the
pass over the post model also yields the embeddings the diversity signal needs, so that model
reads each sample once. Every computed value is cached by (model fingerprint, prompt format,
max_len): losses in the store's signal cache, embeddings in the vector cache beside it. A rerun
with the same models computes nothing, a new checkpoint never reuses a stale value, and finished
batches are written as they complete so an interrupted run resumes.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from middo_core.signals.base import SIGNALS, LossPass, Signal
from middo_core.signals.passes import LossSettings

STAGE_POST = "post model: loss and embeddings"
STAGE_PRE = "complexity: loss under the base model"


@SIGNALS.register
class ComplexitySignal(Signal):
    name: Literal["complexity"] = "complexity"
    prompt_format: Literal["chat", "plain"] = "chat"
    max_len: int = Field(1024, gt=8)
    batch_tokens: int = Field(4096, gt=0)  # padded tokens per forward call
    chunk_batches: int = Field(4, gt=0)  # batches between cache checkpoints
    columns: ClassVar[tuple[str, ...]] = ("loss_pre", "loss_post")

    @classmethod
    def from_config(cls, cfg) -> ComplexitySignal:
        return cls(**LossSettings.from_config(cfg).model_dump())

    def keys(self, fingerprint: str, tokenizer) -> tuple[str, str]:
        """(loss cache key, embedding cache key) under a model with this fingerprint."""
        return LossSettings(**self.params()).keys(fingerprint, tokenizer)

    def inputs(self) -> dict[str, LossPass]:
        return {"post": LossPass("post", stage=STAGE_POST, label="post"),
                "pre": LossPass("base", stage=STAGE_PRE, label="base")}

    def from_inputs(self, ids: list[str], inputs: dict[str, Any], progress=None) -> dict[str, list]:
        return {"loss_post": [inputs["post"].loss[i]["loss"] for i in ids],
                "loss_pre": [inputs["pre"].loss[i]["loss"] for i in ids]}
