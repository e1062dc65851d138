"""What a refinement run did (or, with dry_run, would do)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass
class RefineOptions:
    """Run options beyond middo.yaml's `refine` section."""

    template_variant: Literal["full", "compact"] | None = None  # None: refine.template_variant
    lenient_marker: bool = False  # no marker: take the answer's last paragraph (recorded)
    keep_truncated: bool | None = None  # None: refine.keep_truncated (cut answers are failed)
    max_prompt_chars: int = 4000
    max_response_chars: int = 16000
    rewrite_max_tokens: int | None = None  # None: refine.max_new_tokens
    response_max_tokens: int | None = None  # None: refine.max_new_tokens
    flush_every: int = 32  # proposals per store transaction (opening the store costs ~0.1 s)
    flush_interval_s: float = 5.0  # ... or sooner, so a slow run still saves as it goes


@dataclass
class RefineReport:
    iteration: int
    dry_run: bool
    backend: str
    model: str
    template_variant: str
    planned: dict[str, int] = field(default_factory=dict)  # proposals this run set out to create
    created: dict[str, int] = field(default_factory=dict)  # stored as pending
    failed: dict[str, int] = field(default_factory=dict)  # stored as failed, with a reason
    failure_reasons: dict[str, int] = field(default_factory=dict)
    skipped_done: int = 0  # already stored (pending or decided): never asked again
    skipped_failed: int = 0  # stored as failed and not retried (use retry_failed)
    not_created_budget: int = 0  # left for a later run: the budget cap was reached
    left_by_limit: int = 0  # left for a later run: --limit
    missing_sources: list[str] = field(default_factory=list)  # flagged ids not in the store
    usage: dict[str, Any] = field(default_factory=dict)  # calls, cache hits, tokens, cost
    retries: int = 0
    retry_reasons: dict[str, int] = field(default_factory=dict)
    estimate: dict[str, Any] | None = None  # dry run: calls, tokens and cost before paying
    elapsed_s: float = 0.0

    @property
    def total_created(self) -> int:
        return sum(self.created.values())

    @property
    def total_failed(self) -> int:
        return sum(self.failed.values())

    @property
    def complete(self) -> bool:
        """Every flagged sample got its proposal (none left by budget or limit)."""
        return not self.dry_run and self.not_created_budget == 0 and self.left_by_limit == 0

    @property
    def counts(self) -> dict[str, Any]:
        """The summary an iteration record keeps."""
        return {"created": dict(self.created), "failed": dict(self.failed),
                "not_created_budget": self.not_created_budget, "left_by_limit": self.left_by_limit,
                "cost_usd": self.usage.get("cost_usd", 0.0), "complete": self.complete}

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(total_created=self.total_created, total_failed=self.total_failed,
                   complete=self.complete)
        return out
