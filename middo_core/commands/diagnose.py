"""`middo diagnose`, `middo select`, `middo signals`: compute, threshold and export the signals."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from middo_core.health import Health


def latest_version(ws: Workspace) -> int:
    """The newest dataset version that has samples (0 when there is none)."""
    from middo_core.store.samples import dataset_sizes

    with ws.store.read() as con:
        sizes = dataset_sizes(con)
    return max((i for i, s in sizes.items() if s.get("train")), default=0)


def _signal_summary(ws: Workspace, iteration: int) -> dict[str, dict[str, float]]:
    from middo_core.store.signals import load_signals

    with ws.store.read() as con:
        frame = load_signals(con, iteration)
    out = {}
    for col in ("loss_pre", "loss_post", "diversity", "quality"):
        values = frame[col].dropna() if col in frame else []
        if len(values):
            out[col] = {"mean": float(values.mean()), "std": float(values.std(ddof=0)),
                        "min": float(values.min()), "max": float(values.max())}
    return out


def _map_line(drawn: dict) -> str:
    """What became of the UMAP map drawn with the diagnosis."""
    if not drawn["drawn"]:
        return f"[yellow]not drawn[/yellow]: {drawn['reason']}"
    how = "kept (same embeddings)" if drawn.get("reused") else f"drawn in {drawn['seconds']:.1f} s"
    return f"UMAP of {drawn['points']:,} points {how}"


def print_health(health: Health | None) -> None:
    """The health lines of a diagnosis: one per axis, then what to do about a weak one."""
    if health is None:
        return
    results.print("  signal health (canaries against their clean sources, at the current m):")
    for axis, h in health.axes.items():
        if h.auroc is None:
            results.print(f"    {axis:<11} unmeasured")
            continue
        recall = f"{h.recall:.0%}" if h.recall is not None else "-"
        results.print(f"    {axis:<11} AUROC {h.auroc:.2f} on {h.n} canaries, recall at m {recall}: "
                      f"{h.status}", markup=False, highlight=False)
    for h in health.axes.values():
        if h.status in ("near chance", "uncertain", "weak"):
            console.print(f"  warning: {h.message}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    @app.command()
    def diagnose(
        directory: Path = typer.Argument(..., help="Workspace folder"),
        iteration: int | None = typer.Option(None, help="Dataset version to diagnose (default: the newest)"),
        model: str | None = typer.Option(None, help="Post model (default: the iteration's checkpoint, else the base model)"),
        signals: str = typer.Option("complexity,diversity,quality", help="Signals to compute, comma-separated"),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable report"),
        executor: str = typer.Option("local", help="Where the model passes run: local (this process) or ray"),
        address: str | None = typer.Option(None, help="Ray cluster to join (auto, host:6379, ray://host:10001); default: start one here"),
        actors: int | None = typer.Option(None, help="Ray: model replicas (default: one per GPU, else one per CPU)"),
        background: bool = typer.Option(False, "--background",
                                        help="Run as a background job (local executor)"),
        faithful: bool = typer.Option(False, "--faithful",
                                      help="The paper's judge prompt layout (rubric first, every "
                                           "prompt fed in full) for this run; default: signals.faithful"),
    ) -> None:
        """Compute complexity, diversity and quality for every sample (cached; Ctrl-C, then rerun, resumes)."""
        from middo_core.diagnose import DiagnoseError
        from middo_core.diagnose import diagnose as run_diagnose
        from middo_core.signals.base import registered

        ws = workspace(directory)
        chosen = tuple(s.strip() for s in signals.split(",") if s.strip())
        known = registered().names()
        unknown = [s for s in chosen if s not in known]
        if unknown or not chosen:
            fail(f"unknown signal {', '.join(unknown) or '(none)'} (choose from {', '.join(known)})")
        it = latest_version(ws) if iteration is None else iteration
        if executor not in ("local", "ray"):
            fail(f"unknown executor '{executor}' (use local or ray)")
        if executor == "local" and (address or actors):
            fail("--address and --actors need --executor ray")
        if background:
            if executor != "local":
                fail("--background runs the local executor; drop --executor ray")
            start_background(ws, "diagnose", it, {"post_model": model, "signals": list(chosen),
                                                    "faithful": faithful or None}, as_json)
            return
        from middo_core.executors import make_executor

        try:
            runner = make_executor(executor, address=address, actors=actors)
        except (ImportError, ValueError) as exc:
            fail(str(exc))
        try:
            with run_lock(ws, "diagnose"), runner, progress_bar(not as_json) as bar:
                rep = run_diagnose(ws, it, post_model=model, signals=chosen, progress=bar,
                                   executor=runner, faithful=faithful or None)
        except (Cancelled, KeyboardInterrupt):
            console.print("[yellow]cancelled:[/yellow] finished batches are cached; run the same "
                          "command again to resume")
            raise typer.Exit(130) from None
        except DiagnoseError as exc:
            fail(str(exc))
        except (ImportError, ConnectionError) as exc:  # Ray missing, or no cluster at --address
            fail(f"{executor} executor: {exc}")
        from middo_core.health import signal_health

        summary = _signal_summary(ws, it)
        health = signal_health(ws, it)
        if as_json:
            emit_json({**rep.to_dict(), "summary": summary,
                       "health": health.to_dict() if health else None})
            return
        post = rep.post_model + ("  [yellow](post model = base model: not trained yet)[/yellow]"
                                 if rep.post_model_is_base else "")
        results.print(f"[bold]D({it})[/bold]: {rep.n:,} samples diagnosed in {rep.seconds:.1f} s")
        results.print(f"  base model: {rep.base_model}\n  post model: {post}")
        if rep.judge_model:
            results.print(f"  judge model: {rep.judge_model}")
        if rep.quality.get("mode"):
            results.print(f"  quality: {rep.quality['mode']} ({rep.quality.get('reason', '')})",
                          markup=False, highlight=False)
        results.print(f"  truncated: {rep.truncated:,}   empty responses: {rep.empty_responses:,}")
        for name in rep.computed:
            covered = rep.covered.get(name, rep.n)
            what = "sequences" if name in rep.covered else "samples"
            results.print(f"  {name} pass: {rep.computed[name]:,} {what} computed "
                          f"({covered - rep.computed[name]:,} from cache), {rep.tokens.get(name, 0):,} tokens")
        if rep.knn:
            extra = "" if rep.knn["exact"] else f", recall@k {rep.knn['recall']:.3f}"
            results.print(f"  neighbours: k={rep.knn['k']} via {rep.knn['backend']}{extra}")
        if rep.map:
            results.print("  map: " + _map_line(rep.map))
        for col, s in summary.items():
            results.print(f"  {col:<10} mean {s['mean']:.3f}  std {s['std']:.3f}  "
                          f"min {s['min']:.3f}  max {s['max']:.3f}")
        if rep.canaries:
            c = rep.canaries
            results.print(f"  canaries: {c['count']:,} ({c['share']:.1%} of the samples, "
                          f"{c.get('token_share') or 0:.1%} more tokens for the model to read)")
        print_health(health)

    @app.command()
    def select(
        directory: Path = typer.Argument(..., help="Workspace folder"),
        iteration: int | None = typer.Option(None, help="Dataset version (default: the newest)"),
        m_complexity: float | None = typer.Option(None, help="m for loss (flags the top tail; default: config)"),
        m_diversity: float | None = typer.Option(None, help="m for diversity (negative; default: config)"),
        m_quality: float | None = typer.Option(None, help="m for quality (negative; default: config)"),
        auto: bool = typer.Option(False, "--auto", help="Pick the mildest m's that flag --target of the data"),
        target: float | None = typer.Option(None, help="Target flagged fraction for --auto (default: config, 0.15)"),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable counts"),
    ) -> None:
        """Flag hard, sparse and low-quality samples with tau = mu + m*sigma; store the m's."""
        from middo_core.health import signal_health
        from middo_core.selection import SelectionError, auto_m, save_selection, signal_table

        ws = workspace(directory)
        it = latest_version(ws) if iteration is None else iteration
        cfg = ws.config.selection
        try:
            table = signal_table(ws, it)
        except SelectionError as exc:
            fail(str(exc))
        if auto:
            goal = cfg.target_fraction if target is None else target
            if not 0 < goal < 1:
                fail(f"--target must be between 0 and 1, got {goal}")
            selection = auto_m(table, target=goal)
        else:
            selection = table.select(
                cfg.m_complexity if m_complexity is None else m_complexity,
                cfg.m_diversity if m_diversity is None else m_diversity,
                cfg.m_quality if m_quality is None else m_quality)
        save_selection(ws, it, selection)
        counts = selection.counts()
        health = signal_health(ws, it, table=table, m=counts["m"])
        if as_json:
            emit_json({"iteration": it, **counts, "health": health.to_dict() if health else None})
            return
        n = max(counts["n"], 1)
        results.print(f"[bold]D({it})[/bold]: {counts['n']:,} samples, m = " + ", ".join(
            f"{a} {m:+.2f}" for a, m in counts["m"].items()))
        for axis, c in counts["flagged"].items():
            results.print(f"  {axis:<11} {c:>7,} flagged ({c / n:.1%})")
        for pair, c in counts["overlaps"].items():
            results.print(f"  overlap {pair:<22} {c:>7,}")
        results.print(f"  union       {counts['union']:>7,} ({counts['union_fraction']:.1%})")
        for warning in counts["warnings"]:
            console.print(f"  [yellow]warning:[/yellow] {warning}")
        print_health(health)

    def _health_report(ws, it: int, as_json: bool) -> None:
        from middo_core.health import signal_health
        from middo_core.selection import SelectionError
        from middo_core.tables import text_table

        try:
            found = signal_health(ws, it)
        except SelectionError as exc:
            fail(str(exc))
        if found is None:
            fail(f"D({it}) has no canaries: diagnose it with canaries on (middo.yaml canaries.enabled)")
        if as_json:
            emit_json(found.to_dict())
            return
        print_health(found)
        results.print("  per kind (AUROC against the clean sources; recall of its axis at m):")
        signals = list(found.kinds[0].auroc) if found.kinds else []
        import pandas as pd

        rows = [[k.kind, k.axis, k.n, *(k.auroc[s] for s in signals), k.recall] for k in found.kinds]
        frame = pd.DataFrame(rows, columns=["kind", "axis", "n", *signals, "recall"])
        results.print(text_table(frame), markup=False, highlight=False)

    @app.command("signals")
    def signals_cmd(
        directory: Path = typer.Argument(..., help="Workspace folder"),
        out: Path | None = typer.Option(None, "--out", help="Output file: .parquet, .csv or .jsonl"),
        iteration: int | None = typer.Option(None, help="Dataset version (default: the newest)"),
        health: bool = typer.Option(False, "--health", help="Print each signal's health on this "
                                    "data: per canary kind, AUROC against the clean sources and "
                                    "recall at the stored m"),
        as_json: bool = typer.Option(False, "--json", help="With --health: machine-readable"),
    ) -> None:
        """Write the per-sample signal table (text, every signal value, flags) to a file, and/or
        print how well each signal finds the canaries planted in this diagnosis."""
        from middo_core.store.signals import signals_with_text

        ws = workspace(directory)
        it = latest_version(ws) if iteration is None else iteration
        if out is None and not health:
            fail("nothing to do: give --out FILE to write the signal table, or --health")
        if health:
            _health_report(ws, it, as_json)
            if out is None:
                return
        with ws.store.read() as con:
            frame = signals_with_text(con, it)
        if frame.empty:
            fail(f"D({it}) has no samples")
        suffix = out.suffix.lower()
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        if suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        elif suffix == ".csv":
            frame.to_csv(tmp, index=False)
        elif suffix == ".jsonl":
            frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
        else:
            fail(f"{out}: unknown format {suffix or '(none)'} (use .parquet, .csv or .jsonl)")
        tmp.replace(out)
        diagnosed = bool(frame[["loss_pre", "diversity", "quality"]].notna().any(axis=None))
        results.print(f"Wrote {len(frame):,} rows of D({it}) to {out}"
                      + ("" if diagnosed else " (no signals yet: run middo diagnose)"))
