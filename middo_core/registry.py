"""One registry shape for signals, refiners, backends and evaluators (keyed by a stable name)."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        # `name` is a ClassVar or a pydantic field with a default; either way a stable key
        fields = getattr(cls, "model_fields", {})
        name = fields["name"].default if "name" in fields else getattr(cls, "name", None)
        if not isinstance(name, str):
            raise TypeError(f"{cls.__name__} needs a string `name` to be registered as a {self.kind}")
        if name in self._items:
            raise ValueError(f"{self.kind} '{name}' registered twice")
        self._items[name] = cls
        return cls

    def unregister(self, name: str) -> None:
        """Forget `name` (tests that register a class of their own)."""
        self._items.pop(name, None)

    def get(self, name: str) -> type[T]:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise KeyError(f"unknown {self.kind} '{name}' (known: {known})") from None

    def names(self) -> list[str]:
        return sorted(self._items)
