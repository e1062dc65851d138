"""`middo review` and `middo build`."""

from __future__ import annotations

from pathlib import Path

import typer

from middo_core.build import BuildError, build_next
from middo_core.commands.common import emit_json, fail, results, run_lock, workspace
from middo_core.overlap import overlap, rule
from middo_core.review import (
    ReviewError,
    accept,
    apply_policy,
    bulk_decide,
    edit,
    mark,
    reject,
    review_counts,
    review_queue,
    verdicts,
)


def _latest_with_proposals(ws) -> int:
    from middo_core.status import workspace_status

    iterations = [r["number"] for r in workspace_status(ws)["iterations"] if r["counts"].get("refine")]
    return max(iterations) if iterations else 0


def _print_agreement(ws, iteration: int) -> None:
    from middo_core.agreement import review_agreement

    found = review_agreement(ws, iteration)
    if found.items:
        kappa = "undefined (one decision throughout)" if found.fleiss is None else f"{found.fleiss:.2f}"
        per = ", ".join(f"{n:,} {c}" for c, n in found.per_category.items())
        results.print(f"agreement: Fleiss' kappa {kappa} on {found.items:,} proposals x "
                      f"{found.raters} curators ({per})", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command()
    def review(
        directory: Path = typer.Argument(..., help="Workspace folder"),
        iteration: int | None = typer.Option(None, help="Dataset version whose proposals to review"),
        accept_ids: list[str] = typer.Option([], "--accept", help="Accept this proposal (repeatable)"),
        reject_ids: list[str] = typer.Option([], "--reject", help="Reject this proposal (repeatable)"),
        edit_id: str | None = typer.Option(None, "--edit", help="Edit this proposal: give the new text"),
        instruction: str = typer.Option("", help="Edited instruction (with --edit)"),
        input_text: str = typer.Option("", "--input", help="Edited input (with --edit)"),
        output: str = typer.Option("", help="Edited response (with --edit)"),
        bulk: str | None = typer.Option(None, help="accept | reject every proposal matching the filter"),
        axis: str | None = typer.Option(None, help="Filter: complexity | diversity | quality"),
        status: str = typer.Option("pending", help="Filter: pending | accepted | edited | rejected"),
        min_quality: float | None = typer.Option(None, help="Filter: source quality at least"),
        max_quality: float | None = typer.Option(None, help="Filter: source quality at most"),
        policy: str | None = typer.Option(None, help="Let a policy decide: auto | quality-gate"),
        real: list[str] = typer.Option([], "--real", help="Verdict: this proposal's (or sample's) "
                                       "flag is a real problem (repeatable)"),
        false_alarm: list[str] = typer.Option([], "--false-alarm", help="Verdict: this flag is a "
                                              "false alarm (repeatable)"),
        clear: list[str] = typer.Option([], "--clear-verdict", help="Withdraw the verdict on this "
                                        "flag (repeatable)"),
        note: str | None = typer.Option(None, help="Reviewer note stored with the decision"),
        actor: str = typer.Option("cli", help="Who decides (stored in the audit trail); under "
                                  "review overlap, the list shows the proposals they still owe"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """List proposals, or accept / edit / reject them, one by one, in bulk or by a policy."""
        ws = workspace(directory)
        it = _latest_with_proposals(ws) if iteration is None else iteration
        try:
            for pid in accept_ids:
                accept(ws, pid, actor=actor, note=note)
            for pid in reject_ids:
                reject(ws, pid, actor=actor, note=note)
            if edit_id:
                edit(ws, edit_id, instruction, input_text, output, actor=actor, note=note)
            if bulk:
                n = bulk_decide(ws, it, bulk, axis=axis, status=status, min_quality=min_quality,
                                max_quality=max_quality, actor=actor, note=note)
                results.print(f"{bulk}: {n:,} proposals")
            if policy:
                n = apply_policy(ws, it, policy)
                results.print(f"policy {policy}: accepted {n:,} proposals")
            for verdict, targets in (("real", real), ("false_alarm", false_alarm), ("cleared", clear)):
                for target in targets:
                    sid, on = mark(ws, it, target, verdict, axis=axis, actor=actor, note=note)
                    results.print(f"verdict on {sid} ({on}): {verdict.replace('_', ' ')}")
        except ReviewError as exc:
            fail(str(exc))
        counts = review_counts(ws, it)
        marked = verdicts(ws, it)
        n = overlap(ws)
        owed_by = actor if n > 1 else None
        if as_json:
            queue = review_queue(ws, it, axis=axis)
            owed = review_queue(ws, it, axis=axis, status="pending", owed_by=actor)
            emit_json({"iteration": it, "counts": counts, "overlap": n, "rule": rule(ws),
                       "owed": {"actor": actor, "proposals": list(owed["id"])},
                       "verdicts": marked[["sample_id", "axis", "verdict", "actor"]].to_dict("records"),
                       "proposals": queue[["id", "axis", "status", "reason", "source_id", "instruction"]]
                       .to_dict("records")})
            return
        if not counts:
            results.print(f"No proposals for D({it}) yet. Run `middo refine {directory}` first.")
            return
        for ax, by_status in counts.items():
            parts = ", ".join(f"{n:,} {s}" for s, n in by_status.items())
            said = marked[marked["axis"] == ax]["verdict"].value_counts()
            if len(said):
                parts += "; verdicts: " + ", ".join(f"{n:,} {v.replace('_', ' ')}"
                                                    for v, n in said.items())
            results.print(f"  {ax}: {parts}")
        pending = review_queue(ws, it, axis=axis, status="pending", owed_by=owed_by)
        if owed_by:
            results.print(rule(ws), highlight=False)
            results.print(f"{actor} still owes {len(pending):,} proposal(s).", highlight=False)
            _print_agreement(ws, it)
        for row in pending.head(10).itertuples():
            results.print(f"[bold]{row.id}[/bold] ({row.axis})", highlight=False)
            results.print(f"  before: {row.source_instruction[:120]!r}", highlight=False, markup=False)
            results.print(f"  after:  {(row.instruction or '')[:120]!r}", highlight=False, markup=False)
        if len(pending) > 10:
            results.print(f"  ... and {len(pending) - 10:,} more " + ("owed" if owed_by else "pending"))

    @app.command()
    def build(
        directory: Path = typer.Argument(..., help="Workspace folder"),
        iteration: int = typer.Option(..., help="Build D(iteration + 1) from D(iteration)"),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Make the next dataset version from the accepted and edited proposals."""
        ws = workspace(directory)
        try:
            with run_lock(ws, "build"):
                rep = build_next(ws, iteration)
        except BuildError as exc:
            fail(str(exc))
        if as_json:
            emit_json(rep.to_dict())
            return
        results.print(
            f"D({rep.iteration}): {rep.size_before:,} - {rep.removed:,} replaced + "
            f"{sum(rep.added.values()):,} new = {rep.size_after:,} samples"
            + (f" ({rep.duplicates:,} duplicates dropped)" if rep.duplicates else "")
        )
