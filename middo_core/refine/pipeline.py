"""refine(): one proposal per (axis, flagged sample), each stored as soon as it is done.

For each flagged sample the axis's operator asks the LLM for a new prompt (simplify, improve or
augment), the answer is parsed and checked, and a second call writes a fresh response. Every
answer is cached on disk before it is used, and proposals are written in short transactions,
so a run stopped at any point resumes without paying twice and without duplicates: a proposal's
id is a hash of (iteration, axis, source, templates, model).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from middo_core.config import RefineConfig
from middo_core.llm import (
    BudgetExhausted,
    ChatRequest,
    ChatResult,
    LLMBackend,
    LLMCache,
    LLMClient,
    LLMConfigError,
    LLMError,
    Prices,
    make_backend,
    run_sync,
)
from middo_core.progress import ProgressFn, report
from middo_core.refine.estimate import estimate_run
from middo_core.refine.operators import AXIS_OPERATOR, Operator, Respond, operator_for
from middo_core.refine.parse import parse_response, parse_rewrite
from middo_core.refine.report import RefineOptions, RefineReport
from middo_core.sample import Sample
from middo_core.store.iterations import STATUSES, get_iteration, upsert_iteration
from middo_core.store.proposals import (
    proposal_counts,
    proposal_states,
    put_proposals,
    stored_neighbours,
)
from middo_core.store.samples import get_samples, row_to_sample
from middo_core.workspace import Workspace

if TYPE_CHECKING:
    from middo_core.executors.base import Executor

STAGE = "refine"


@dataclass
class Job:
    proposal_id: str
    axis: str
    op: Operator
    source_id: str
    source: Sample
    neighbour_ids: list[str]
    neighbours: list[Sample]
    attempt: int = 0


def proposal_id(iteration: int, axis: str, source_id: str, template_hashes: list[str], model: str) -> str:
    blob = json.dumps([iteration, axis, source_id, template_hashes, model], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Runner:
    """Builds the two requests of a job and turns their answers into a proposal row."""

    def __init__(self, iteration: int, backend: LLMBackend, cfg: RefineConfig, variant: str,
                 opts: RefineOptions) -> None:
        self.iteration, self.backend, self.cfg, self.opts = iteration, backend, cfg, opts
        self.variant = variant
        self.respond = Respond(variant=variant)  # type: ignore[arg-type]

    def _request(self, user: str, prefill: str, max_tokens: int | None, stage: str,
                 attempt: int) -> ChatRequest:
        limit = max_tokens or self.cfg.max_new_tokens
        if self.backend.max_tokens_cap is not None:
            limit = min(limit, self.backend.max_tokens_cap)
        return ChatRequest(
            model=self.backend.model, messages=(("user", user),), temperature=self.cfg.temperature,
            top_p=self.cfg.top_p, max_tokens=limit,
            prefill=prefill if self.backend.supports_prefill else "", attempt=attempt, stage=stage)

    def rewrite_request(self, job: Job) -> tuple[ChatRequest, Any]:
        prompted = job.op.build(job.source, job.neighbours)
        return self._request(prompted.user, prompted.prefill, self.opts.rewrite_max_tokens,
                             "rewrite", job.attempt), prompted

    def response_request(self, prompt: str, attempt: int) -> ChatRequest:
        return self._request(self.respond.build_for(prompt).user, "", self.opts.response_max_tokens,
                             "response", attempt)

    def _cut(self, answer: ChatResult, request: ChatRequest, what: str) -> str | None:
        """Why an answer cut at the token limit is not kept (a half sentence is a defect)."""
        keep = self.cfg.keep_truncated if self.opts.keep_truncated is None else self.opts.keep_truncated
        if answer.finish_reason != "length" or keep:
            return None
        return (f"{what} cut at the token limit ({request.max_tokens} tokens): raise "
                "refine.max_new_tokens, or keep such answers with --keep-truncated")

    def parse_rewrite(self, job: Job, prompted: Any, raw: str):
        sources = [job.source.prompt] + [n.prompt for n in job.neighbours]
        return parse_rewrite(raw, prompted.marker, prompted.labels, sources,
                             self.opts.max_prompt_chars, self.opts.lenient_marker)

    async def run(self, job: Job, client: LLMClient) -> dict[str, Any] | None:
        """The proposal row (pending or failed), or None when the budget stopped it."""
        row = self._row(job)
        request, prompted = self.rewrite_request(job)
        answer = await _call(client, request)
        if not isinstance(answer, ChatResult):
            return None if answer is None else {**row, "status": "failed",
                                                "reason": f"rewrite call failed: {answer}"}
        row["raw_text"] = answer.text
        row["usage"]["rewrite"] = _usage(answer, client)
        if cut := self._cut(answer, request, "new prompt"):
            return {**row, "status": "failed", "reason": cut}
        parsed = self.parse_rewrite(job, prompted, answer.text)
        row["params"]["parse"] = ("lenient (no marker)" if parsed.lenient
                                  else "marker" if prompted.marker in answer.text else "no marker")
        if not parsed.ok:
            return {**row, "status": "failed", "reason": parsed.reason}
        row["instruction"], row["input"] = parsed.text, ""
        reply_request = self.response_request(parsed.text, job.attempt)
        reply = await _call(client, reply_request)
        if not isinstance(reply, ChatResult):
            return None if reply is None else {**row, "status": "failed",
                                               "reason": f"response call failed: {reply}"}
        row["raw_response"] = reply.text
        row["usage"]["response"] = _usage(reply, client)
        row["usage"]["cost_usd"] = sum(u.get("cost_usd", 0.0) for u in
                                       (row["usage"]["rewrite"], row["usage"]["response"]))
        if cut := self._cut(reply, reply_request, "response"):
            return {**row, "status": "failed", "reason": cut}
        response = parse_response(reply.text, self.opts.max_response_chars)
        if not response.ok:
            return {**row, "status": "failed", "reason": response.reason}
        return {**row, "output": response.text, "status": "pending", "reason": None}

    def _row(self, job: Job) -> dict[str, Any]:
        rewrite_request, _ = self.rewrite_request(job)
        return {
            "id": job.proposal_id, "iteration": self.iteration, "axis": job.axis,
            "source_id": job.source_id, "neighbour_ids": job.neighbour_ids,
            "template_hash": job.op.template.hash, "model": self.backend.model,
            "params": {**self.backend.describe(), **rewrite_request.sampling(),
                       "response_max_tokens": self.response_request("", 0).max_tokens,
                       "template_variant": self.variant, "operator": job.op.name,
                       "rewrite_template": job.op.template.name,
                       "response_template": self.respond.template.name,
                       "response_template_hash": self.respond.template.hash,
                       "prefill": bool(rewrite_request.prefill), "attempt": job.attempt,
                       "k": len(job.neighbours)},
            "raw_text": None, "raw_response": None, "instruction": None, "input": None,
            "output": None, "usage": {},
        }


def _usage(result: Any, client: LLMClient) -> dict[str, Any]:
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "finish_reason": result.finish_reason, "cached": result.cached,
            "cost_usd": client.cost_of(result)}


def plan_jobs(ws: Workspace, iteration: int, flagged: dict[str, list[str]], runner: Runner,
              rep: RefineReport, retry_failed: bool, limit: int | None) -> list[Job]:
    """The jobs this run must do, after skipping what is stored; one short read."""
    unknown = set(flagged) - set(AXIS_OPERATOR)
    if unknown:
        raise ValueError(f"unknown axes {sorted(unknown)} (known: {', '.join(AXIS_OPERATOR)})")
    ids = sorted({sid for axis in flagged for sid in flagged[axis]})
    with ws.store.read() as con:
        frame = get_samples(con, ids)
        neighbours = stored_neighbours(con, iteration, flagged.get("diversity", []))
        wanted = {n for ns in neighbours.values() for n in ns}
        nframe = get_samples(con, sorted(wanted))
        samples = {r["id"]: row_to_sample(r) for r in frame.to_dict("records")}
        samples.update({r["id"]: row_to_sample(r) for r in nframe.to_dict("records")})
        candidates: list[Job] = []
        for axis in AXIS_OPERATOR:
            op = operator_for(axis, runner.variant)  # type: ignore[arg-type]
            hashes = [op.template.hash, runner.respond.template.hash]
            for sid in dict.fromkeys(flagged.get(axis, [])):
                if sid not in samples:
                    rep.missing_sources.append(sid)
                    continue
                nids = [n for n in neighbours.get(sid, []) if n in samples] if axis == "diversity" else []
                candidates.append(Job(proposal_id(iteration, axis, sid, hashes, runner.backend.model),
                                      axis, op, sid, samples[sid], nids, [samples[n] for n in nids]))
        states = proposal_states(con, [j.proposal_id for j in candidates])
    jobs = []
    for job in candidates:
        status, attempt = states.get(job.proposal_id, (None, 0))
        if status == "failed" and not retry_failed:
            rep.skipped_failed += 1
        elif status == "failed":
            job.attempt = attempt + 1  # a fresh sample, not the cached answer that failed
            jobs.append(job)
        elif status is not None:
            rep.skipped_done += 1
        else:
            jobs.append(job)
    if limit is not None and len(jobs) > limit:
        rep.left_by_limit = len(jobs) - limit
        jobs = jobs[:limit]
    for job in jobs:
        rep.planned[job.axis] = rep.planned.get(job.axis, 0) + 1
    return jobs


def refine(ws: Workspace, iteration: int, flagged: dict[str, list[str]],
           backend: LLMBackend | str | None = None, progress: ProgressFn | None = None,
           dry_run: bool = False, *, retry_failed: bool = False, limit: int | None = None,
           options: RefineOptions | None = None, executor: Executor | None = None) -> RefineReport:
    """Create and store one proposal per (axis, flagged sample id); see the module docstring.

    flagged: axis ("complexity", "quality", "diversity") -> sample ids. backend: an instance, a
    registered name, or None for middo.yaml's refine.backend. dry_run: plan and estimate calls,
    tokens and cost; nothing is called or stored. executor: None or local runs the calls here;
    a Ray executor runs them on its workers (refine.distributed), the same Runner on each.
    """
    cfg = ws.config.refine
    opts = options or RefineOptions()
    llm = backend if isinstance(backend, LLMBackend) else make_backend(cfg, name=backend)
    variant = opts.template_variant or cfg.template_variant
    runner = Runner(iteration, llm, cfg, variant, opts)
    rep = RefineReport(iteration=iteration, dry_run=dry_run, backend=llm.name, model=llm.model,
                       template_variant=variant)
    started = time.monotonic()
    distributed = executor is not None and executor.name != "local"
    if not dry_run and not distributed:
        # heavy client imports overlap with planning instead of delaying the first call
        threading.Thread(target=llm.warm_up, daemon=True).start()
    jobs = plan_jobs(ws, iteration, flagged, runner, rep, retry_failed, limit)
    cache = LLMCache(ws.artifacts / "llm_cache")
    prices = Prices(cfg.price_per_1k_input, cfg.price_per_1k_output)
    if dry_run:
        rep.estimate = estimate_run(jobs, runner, cache, prices, cfg.budget_usd)
        rep.elapsed_s = time.monotonic() - started
        return rep
    if distributed:
        try:
            from middo_core.refine.distributed import refine_on  # it builds on this module

            leftover = refine_on(executor, ws, jobs, runner, rep, opts, progress, stage=STAGE)
        finally:
            rep.elapsed_s = time.monotonic() - started
        _record_iteration(ws, iteration, rep, leftover)
        return rep
    # a batching backend needs at least a batch of requests in flight
    slots = max(cfg.concurrency, getattr(llm, "batch_size", 0))
    client = LLMClient(llm, cache, prices, cfg.budget_usd, concurrency=slots)
    retries_before = llm.stats.retries
    try:
        leftover = run_sync(_run_jobs(ws, jobs, runner, client, rep, opts, progress))
    finally:
        rep.usage = client.usage.to_json()
        rep.retries = llm.stats.retries - retries_before
        rep.retry_reasons = dict(llm.stats.retry_reasons)
        rep.elapsed_s = time.monotonic() - started
    _record_iteration(ws, iteration, rep, leftover)
    return rep


async def _run_jobs(ws: Workspace, jobs: list[Job], runner: Runner, client: LLMClient,
                    rep: RefineReport, opts: RefineOptions,
                    progress: ProgressFn | None) -> list[dict[str, Any]]:
    """Run every job; store rows in batches. Returns the last rows, not yet stored."""
    total = len(jobs)
    report(progress, STAGE, 0, total, "starting")
    tasks = [asyncio.create_task(runner.run(job, client)) for job in jobs]
    buffer: list[dict[str, Any]] = []
    last_flush = time.monotonic()
    done = 0
    try:
        for next_done in asyncio.as_completed(tasks):
            row = await next_done
            done += 1
            if row is None:
                rep.not_created_budget += 1
            else:
                buffer.append(row)
                tally(rep, row)
            if buffer and (len(buffer) >= opts.flush_every
                           or time.monotonic() - last_flush >= opts.flush_interval_s):
                rows, buffer = buffer, []
                await asyncio.to_thread(write_rows, ws, rows)  # the store is open only for this
                last_flush = time.monotonic()
            report(progress, STAGE, done, total,
                   f"{rep.total_created} proposals, {rep.total_failed} failed, "
                   f"${client.usage.cost_usd:.4f}")
        rows, buffer = buffer, []
        return rows  # stored with the iteration record, in one transaction
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if buffer:
            write_rows(ws, buffer)  # whatever finished before a stop or an error is kept
        await client.backend.aclose()


def tally(rep: RefineReport, row: dict[str, Any]) -> None:
    """Count a finished proposal row (pending or failed) in the report."""
    counts = rep.created if row["status"] == "pending" else rep.failed
    counts[row["axis"]] = counts.get(row["axis"], 0) + 1
    if row["status"] == "failed":
        rep.failure_reasons[row["reason"]] = rep.failure_reasons.get(row["reason"], 0) + 1


def write_rows(ws: Workspace, rows: list[dict[str, Any]]) -> None:
    with ws.store.write() as con:
        put_proposals(con, rows)



def _record_iteration(ws: Workspace, iteration: int, rep: RefineReport,
                      rows: list[dict[str, Any]]) -> None:
    """The last rows, then counts per axis into the iteration record; status 'refined' once
    nothing is left."""
    with ws.store.write() as con:
        put_proposals(con, rows)
        counts = proposal_counts(con, iteration)
        fields: dict[str, Any] = {"counts": {
            "proposals": {axis: sum(n for s, n in by.items() if s != "failed")
                          for axis, by in counts.items()},
            "proposals_failed": sum(by.get("failed", 0) for by in counts.values()),
        }}
        current = get_iteration(con, iteration)
        earlier = current is None or STATUSES.index(current["status"]) <= STATUSES.index("refined")
        if rep.complete:
            fields["counts"]["refine"] = rep.counts  # the loop's marker that this step is done
            if earlier:
                fields["status"] = "refined"
        upsert_iteration(con, iteration, **fields)


async def _call(client: LLMClient, request: ChatRequest) -> ChatResult | str | None:
    """The answer; the failure's reason; or None when the budget stopped the call.
    A configuration error (bad key, unloadable model) stops the whole run."""
    try:
        return await client.complete(request)
    except BudgetExhausted:
        return None
    except LLMConfigError:
        raise
    except LLMError as exc:
        return exc.reason
