"""A toy signal outside middo_core, for the Ray executor's test (its actors import this module)."""

from __future__ import annotations

from typing import ClassVar, Literal

import pandas as pd

from middo_core.signals.base import Role, Signal


class LastLogSumExp(Signal):
    """Toy signal with a model: logsumexp of the base model's last logits after each response."""

    name: Literal["last_logsumexp"] = "last_logsumexp"
    columns: ClassVar[tuple[str, ...]] = ("last_logsumexp",)
    role: ClassVar[Role | None] = "base"

    def compute(self, batch, model, progress=None) -> pd.DataFrame:
        import torch

        values = []
        with torch.inference_mode():
            for s in batch:
                ids = model.tokenizer(s.output, return_tensors="pt").input_ids[:, :48]
                values.append(float(model.model(ids).logits[0, -1].float().logsumexp(-1)))
        return pd.DataFrame({"last_logsumexp": values}, index=[s.id for s in batch])
