"""`middo refine`: LLM proposals for the flagged samples of a dataset version."""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path

import typer

from middo_core.commands.common import (
    console,
    emit_json,
    fail,
    progress_bar,
    results,
    run_lock,
    start_background,
    workspace,
)
from middo_core.progress import Cancelled
from middo_core.workspace import Workspace


def _default_iteration(ws: Workspace) -> int:
    from middo_core.store.iterations import list_iterations

    with ws.store.read() as con:
        records = list_iterations(con)
    selected = [r["number"] for r in records if "flagged_ids" in r["counts"]]
    if selected:
        return max(selected)
    return max((r["number"] for r in records), default=0)


def register(app: typer.Typer) -> None:
    @app.command()
    def refine(
        directory: Path = typer.Argument(..., help="Workspace folder"),
        iteration: int | None = typer.Option(None, help="Dataset version whose flagged samples to refine"),
        backend: str | None = typer.Option(None, help="auto | local | openai | vllm (default: refine.backend)"),
        model: str | None = typer.Option(None, help="Refiner model (default: refine.model)"),
        axes: str = typer.Option("complexity,quality,diversity", help="Axes to refine, comma-separated"),
        variant: str | None = typer.Option(None, help="Templates: full | compact (default: refine.template_variant)"),
        max_new_tokens: int | None = typer.Option(None, help="Token limit per call (default: refine.max_new_tokens)"),
        dry_run: bool = typer.Option(False, "--dry-run", help="Estimate calls, tokens and cost; call nothing"),
        retry_failed: bool = typer.Option(False, "--retry-failed", help="Ask again for failed proposals"),
        limit: int | None = typer.Option(None, help="Create at most this many proposals now"),
        lenient: bool = typer.Option(False, "--lenient", help="Without the marker, take the last paragraph"),
        keep_truncated: bool = typer.Option(False, "--keep-truncated",
                                            help="Keep answers cut at the token limit (default: failed)"),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable report"),
        background: bool = typer.Option(False, "--background", help="Run as a background job"),
        api_key_file: Path | None = typer.Option(
            None, "--api-key-file", help="File holding the endpoint's API key (instead of "
            "OPENAI_API_KEY; same as OPENAI_API_KEY_FILE). The key is never stored"),
    ) -> None:
        """Rewrite hard and low-quality samples, write new samples near sparse ones (as proposals)."""
        from middo_core.llm import BACKENDS, LLMConfigError, make_backend
        from middo_core.refine import RefineOptions
        from middo_core.refine import refine as run_refine
        from middo_core.selection import AXES, flagged_sets

        ws = workspace(directory)
        if api_key_file is not None:
            if not api_key_file.is_file():
                fail(f"--api-key-file {api_key_file}: no such file")
            os.environ["OPENAI_API_KEY_FILE"] = str(api_key_file.resolve())  # read by the backend
        chosen = [a.strip() for a in axes.split(",") if a.strip()]
        unknown = [a for a in chosen if a not in AXES]
        if unknown:
            fail(f"unknown axis {', '.join(unknown)} (choose from {', '.join(AXES)})")
        if variant not in (None, "full", "compact"):
            fail(f"unknown template variant {variant!r} (full | compact)")
        if backend is not None and backend not in BACKENDS.names():
            fail(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS.names())})")
        it = _default_iteration(ws) if iteration is None else iteration
        try:
            flagged = flagged_sets(ws, it, chosen)
        except Exception as exc:  # noqa: BLE001 - no signals / selection: one clear sentence
            fail(f"no flagged samples for iteration {it}: {exc}")
        if background:
            if dry_run or max_new_tokens is not None:
                fail("--background takes neither --dry-run nor --max-new-tokens "
                     "(set refine.max_new_tokens in middo.yaml)")
            start_background(ws, "refine", it, {
                "axes": chosen, "backend": backend, "model": model, "variant": variant,
                "retry_failed": retry_failed, "limit": limit, "lenient": lenient,
                "keep_truncated": keep_truncated or None, "flagged": flagged}, as_json)
            return
        options = RefineOptions(template_variant=variant, lenient_marker=lenient,  # type: ignore[arg-type]
                                keep_truncated=keep_truncated or None,
                                rewrite_max_tokens=max_new_tokens, response_max_tokens=max_new_tokens)
        llm = make_backend(ws.config.refine, name=backend, model=model)
        try:
            with run_lock(ws, "refine") if not dry_run else nullcontext(), \
                    progress_bar(enabled=not as_json and not dry_run) as bar:
                rep = run_refine(ws, it, flagged, backend=llm, progress=bar, dry_run=dry_run,
                                 retry_failed=retry_failed, limit=limit, options=options)
        except LLMConfigError as exc:
            fail(f"refiner endpoint unusable: {exc}")
        except (Cancelled, KeyboardInterrupt):
            fail("stopped; finished proposals are stored and answers are cached: run again to resume")
        if as_json:
            emit_json(rep.to_json())
            return
        _print(rep)


def _print(rep) -> None:
    head = f"iteration {rep.iteration}: {rep.backend} / {rep.model} ({rep.template_variant} templates)"
    results.print(head, highlight=False)
    if rep.dry_run:
        est = rep.estimate or {}
        results.print(
            f"  would create {est.get('proposals', 0)} proposals: {est.get('calls', 0)} calls "
            f"({est.get('cached_calls', 0)} answers already cached), ~{est.get('prompt_tokens', 0):,} "
            f"prompt tokens, at most {est.get('completion_tokens_max', 0):,} output tokens, "
            f"at most ${est.get('cost_usd_max', 0.0):.4f}", highlight=False)
        if not est.get("within_budget", True):
            console.print(f"  [yellow]over the budget of ${est['budget_usd']:.4f}: the run will stop there[/yellow]")
    else:
        for axis in sorted(set(rep.created) | set(rep.failed)):
            results.print(f"  {axis}: {rep.created.get(axis, 0)} proposals, {rep.failed.get(axis, 0)} failed",
                          highlight=False)
        for reason, n in rep.failure_reasons.items():
            results.print(f"    {n} x {reason}", highlight=False)
        u = rep.usage
        results.print(f"  {u.get('calls', 0)} calls, {u.get('cache_hits', 0)} cache hits, "
                      f"{rep.retries} retries, {u.get('prompt_tokens', 0):,} + "
                      f"{u.get('completion_tokens', 0):,} tokens, ${u.get('cost_usd', 0.0):.4f}, "
                      f"{rep.elapsed_s:.1f} s", highlight=False)
    if rep.skipped_done or rep.skipped_failed:
        results.print(f"  skipped {rep.skipped_done} already stored, {rep.skipped_failed} failed before"
                      + (" (--retry-failed asks again)" if rep.skipped_failed else ""), highlight=False)
    if rep.not_created_budget:
        console.print(f"  [yellow]{rep.not_created_budget} not created: budget reached "
                      f"(raise refine.budget_usd and run again)[/yellow]")
    if rep.left_by_limit:
        results.print(f"  {rep.left_by_limit} left by --limit: run again for the rest", highlight=False)
    if rep.missing_sources:
        console.print(f"  [yellow]{len(rep.missing_sources)} flagged ids are not in the store[/yellow]")
