"""Models by name for the signals: one loaded at a time, tokenizers kept.

A diagnosis reads several models in turn (the post model, the judge, the base model); holding one
at a time bounds memory to the largest, and asking again for the loaded one costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class LoadedModel:
    """What a signal's `compute` gets: the model (None where a backend needs none) and tokenizer."""

    name: str
    model: Any
    tokenizer: Any


class ModelSource:
    """Hands out a tokenizer or a model by name, keeping at most one model loaded at a time."""

    def __init__(self, device: str = "auto",
                 loader: Callable[[str, str], tuple[Any, Any]] | None = None) -> None:
        self.device = device
        self._loader = loader
        self._name: str | None = None
        self._model = None
        self._tokenizers: dict[str, Any] = {}
        self.loads = 0

    def tokenizer(self, name: str):
        if name not in self._tokenizers:
            from middo_core.models.loader import load_tokenizer

            self._tokenizers[name] = load_tokenizer(name)
        return self._tokenizers[name]

    def model(self, name: str):
        if self._name != name:
            self.release()
            if self._loader is not None:
                self._model, tok = self._loader(name, self.device)
            else:
                from middo_core.models.loader import load_model

                self._model, tok = load_model(name, self.device)
            self._tokenizers.setdefault(name, tok)
            self._name = name
            self.loads += 1
        return self._model

    def loaded(self, name: str) -> LoadedModel:
        return LoadedModel(name, self.model(name), self.tokenizer(name))

    def release(self) -> None:
        self._model, self._name = None, None
        import gc

        gc.collect()
