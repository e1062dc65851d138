"""What a response adds of its own: its relevance over the tokens it neither restates nor repeats.

Two failures the `pmi-ppl` quality signal scores as good answers (docs/EVIDENCE.md, "Quality:
repetition and restating"): a response that restates the request and says nothing else (the
instruction explains it very well: low IFD), and a generation loop (a repeated sentence the
model finds ever more likely). Both are made of tokens that the model predicts by copying.

The novel pass runs, under the judge model, each sample as it is and its response after an empty
user turn, keeps each response token's NLL in both (the response is tokenized alone, so its
tokens are the same in both sequences), and marks each response token:
- repeated: inside a token n-gram (NGRAM) that occurred earlier in the response. The share of
  such tokens is the n-gram repetition ratio of data-quality filters (Data-Juicer's
  word/character repetition filters, Gopher's duplicate n-gram fractions), here on the model's
  tokens;
- restated: inside a token n-gram that occurs in the instruction and input.
The rest are the response's own tokens. Per sample the payload keeps the shares and the sums of
the own tokens' NLL with and without the instruction, from which the `pmi-novel` mode reads
IFD over the own tokens (middo_core.signals.judge_pmi.pmi_frame). Nothing is estimated over the
dataset. Cost: two passes under the judge (the sample and its bare response), one more than
`pmi-ppl` runs (its response-only pass is this pass's second half).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from middo_core.models.source import ModelSource
from middo_core.progress import ProgressFn
from middo_core.sample import Sample
from middo_core.store.signals import CacheRows

NOVEL = "novel"  # signal_cache namespace
BLOCK = 256  # samples per checkpoint of the pass (both halves of each)
NGRAM = 4
OWN_POWER = 3  # the own share enters the geometric mean cubed (chosen on the development sets)
STAGE = "quality: the response's own tokens"


def marks(response: list[int], request: list[int], n: int = NGRAM) -> tuple[np.ndarray, np.ndarray]:
    """(repeated, restated) boolean masks over the response tokens (see the module docstring)."""
    repeated = np.zeros(len(response), dtype=bool)
    restated = np.zeros(len(response), dtype=bool)
    asked = {tuple(request[i:i + n]) for i in range(len(request) - n + 1)}
    seen: set[tuple[int, ...]] = set()
    for i in range(len(response) - n + 1):
        gram = tuple(response[i:i + n])
        if gram in seen:
            repeated[i:i + n] = True
        if gram in asked:
            restated[i:i + n] = True
        seen.add(gram)
    return repeated, restated


def novel_payload(response: list[int], request: list[int], cond_nll: np.ndarray | None,
                  uncond_nll: np.ndarray | None) -> dict[str, Any]:
    """The cache payload of one sample: shares of repeated and restated tokens, the count of its
    own tokens and the sums of their NLL with (cond) and without (uncond) the instruction.
    The NLL arrays cover the response tokens and the turn's end marker after them (ignored)."""
    n = len(response)
    repeated, restated = marks(response, request)
    own = ~(repeated | restated)
    out: dict[str, Any] = {"n": n, "repeated": float(repeated.mean()) if n else 0.0,
                           "restated": float(restated.mean()) if n else 0.0,
                           "own": int(own.sum()), "cond_own": None, "uncond_own": None}
    aligned = (cond_nll is not None and uncond_nll is not None and len(cond_nll) >= n
               and len(uncond_nll) >= n)
    if aligned and n:
        out["cond_own"] = float(cond_nll[:n][own].sum())
        out["uncond_own"] = float(uncond_nll[:n][own].sum())
    return out


def _response_tokens(enc, end_tokens: int) -> list[int]:
    """The response's tokens in an encoded sample: without the turn's end marker (unless max_len
    cut the response before it)."""
    ids = enc.ids[enc.prompt_len:]
    return list(ids if enc.truncated else ids[: max(len(ids) - end_tokens, 0)])


def _end_tokens(tokenizer, prompt_format: str) -> int:
    """How many tokens the encoded response carries after its text (the turn's end marker), read
    from a probe: the response "x" alone against its encoding."""
    from middo_core.signals.encode import encode_all

    enc = encode_all([Sample(instruction="", output="x")], tokenizer, prompt_format, 64)[0]
    bare = tokenizer("x", add_special_tokens=False)["input_ids"]
    return max(enc.response_len - len(bare), 0)


def compute_novel(model, tokenizer, settings, ids: list[str], samples: list[Sample],
                  on_rows: Callable[[CacheRows], None], progress: ProgressFn | None = None,
                  block: int = BLOCK):
    """Run the samples and their bare responses with per-token NLLs, `block` samples at a time;
    each block's rows go to on_rows once both its halves are done (the executor checkpoints them,
    so a stopped pass resumes from the last whole block). Returns summed PassStats fields."""
    from dataclasses import asdict, replace

    from middo_core.signals.encode import encode_all
    from middo_core.signals.forward import PassOutput, run_pass
    from middo_core.signals.judge_pmi import unconditioned

    end = _end_tokens(tokenizer, settings.prompt_format)
    total = 2 * len(samples)
    stats: dict[str, float] = {}
    for start in range(0, len(samples), block):
        part = samples[start:start + block]
        cond = encode_all(part, tokenizer, settings.prompt_format, settings.max_len)
        bare = encode_all([unconditioned(s) for s in part], tokenizer, settings.prompt_format,
                          settings.max_len)
        got: dict[str, PassOutput] = {"cond": PassOutput(), "bare": PassOutput()}
        for half, (name, encoded) in enumerate((("cond", cond), ("bare", bare))):
            offset = 2 * start + half * len(part)

            def step(ev, offset=offset):  # one bar over every block and both halves
                if progress is not None:
                    progress(replace(ev, done=offset + ev.done, total=total))

            one = run_pass(model, encoded, want_loss=True, batch_tokens=settings.batch_tokens,
                           progress=step, stage=STAGE, on_chunk=got[name].extend,
                           chunk_batches=settings.chunk_batches, want_tokens=True)
            for k, v in asdict(one).items():
                stats[k] = stats.get(k, 0) + v
        by = {name: dict(zip(out.index, out.token_nll, strict=True)) for name, out in got.items()}
        rows = CacheRows()
        for pos, sid in enumerate(ids[start:start + block]):
            enc = cond[pos]
            mine, theirs = _response_tokens(enc, end), _response_tokens(bare[pos], end)
            k = min(len(mine), len(theirs))  # max_len may have cut either: their common start
            same = mine[:k] == theirs[:k]
            request = list(enc.ids[enc.span[0]:enc.span[1]])
            rows.ids.append(sid)
            rows.payloads.append(novel_payload(mine[:k], request,
                                               by["cond"].get(pos) if same else None,
                                               by["bare"].get(pos) if same else None))
        on_rows(rows)
    return stats


@dataclass
class NovelWork:
    """The novel pass of samples under one model (an executor's work, like LossWork)."""

    settings: Any  # LossSettings
    model_name: str
    key: str
    vector_key: str | None = None
    namespace: str = NOVEL

    def load(self, source: ModelSource):
        return source.loaded(self.model_name)

    def tasks(self, samples: list[Sample], source: ModelSource, size: int) -> list[list[int]]:
        from middo_core.signals.passes import plan_loss_tasks

        return plan_loss_tasks(samples, source.tokenizer(self.model_name), self.settings, size)

    def run(self, model, ids: list[str], samples: list[Sample], emit: Callable[[CacheRows], None],
            progress: ProgressFn | None = None) -> dict[str, float]:
        return compute_novel(model.model, model.tokenizer, self.settings, ids, samples, emit,
                             progress)


def novel_pass(ws, settings, model_name: str, samples: dict[str, Sample], source: ModelSource,
               run_work) -> Any:
    """The novel payloads of every sample under one model, from the cache where possible (keyed
    like the loss pass, by model fingerprint, prompt format and max_len); a PassResult whose
    `loss` holds the payloads."""
    from middo_core.models.loader import model_fingerprint
    from middo_core.signals.base import cache_key
    from middo_core.signals.encode import format_hash
    from middo_core.signals.passes import PassResult
    from middo_core.store.signals import get_cached

    ids = list(samples)
    fingerprint = model_fingerprint(model_name)
    fmt = format_hash(source.tokenizer(model_name), settings.prompt_format)
    key = cache_key(NOVEL, fingerprint, settings.prompt_format, fmt, settings.max_len, NGRAM)
    out = PassResult(fingerprint=fingerprint)
    with ws.store.read() as con:
        out.loss = get_cached(con, NOVEL, key, ids)
    todo = [i for i in ids if i not in out.loss]
    if not todo:
        return out

    def sink(rows: CacheRows) -> None:
        out.loss.update(zip(rows.ids, rows.payloads, strict=True))

    out.stats = run_work(NovelWork(settings, model_name, key), todo, [samples[i] for i in todo], sink)
    out.computed = int(out.stats.get("samples", 0)) // 2
    return out


def novel_frame(ids: list[str], conditional: list[tuple[float | None, float | None]],
                novel: list[dict[str, Any]], reference: list[float | None]):
    """DataFrame by sample id for the `pmi-novel` mode: relevance read over the response's own
    tokens (IFD over them: the sum of their NLL with the instruction over the sum without it),
    the shares of repeated and restated tokens, and quality = 10 x (relevance x completion x
    plausibility x own^3)^(1/4): the geometric mean of `pmi-ppl`'s three factors and the share of
    the response's own tokens (neither repeated nor restated), that share cubed, on 0-10 (the
    power was chosen on the development sets: docs/EVIDENCE.md, "Quality: repetition and
    restating"). A response with no own token scores 0; where max_len cut the
    response, the tokens both halves of the pass kept count."""
    import pandas as pd

    def arr(values):
        return np.array([np.nan if v is None else v for v in values], dtype=float)

    cond, end = arr([c[0] for c in conditional]), arr([c[1] for c in conditional])
    c_own, u_own = arr([p.get("cond_own") for p in novel]), arr([p.get("uncond_own") for p in novel])
    own, n = arr([p.get("own", 0) for p in novel]), arr([p.get("n", 0) for p in novel])
    repeated = arr([p.get("repeated", 0.0) for p in novel])
    restated = arr([p.get("restated", 0.0) for p in novel])
    with np.errstate(divide="ignore", invalid="ignore"):
        ifd_own = np.where(own > 0, c_own / np.maximum(u_own, 1e-6), 1.0)
        share = np.where(n > 0, own / np.maximum(n, 1), 0.0)
    relevance = np.clip(1 - ifd_own, 0, 1)
    done = np.where(np.isnan(end), 1.0, np.exp(end))
    plausible = np.exp(-arr(reference))
    quality = 10 * (relevance * done * plausible * share ** OWN_POWER) ** (1 / 4)
    columns = {"loss_conditional": cond, "end_logprob": end, "loss_reference": arr(reference),
               "ifd_own": ifd_own, "own_share": share, "repeated": repeated, "restated": restated}
    return pd.DataFrame({**columns, "quality": np.nan_to_num(quality, nan=0.0)},
                        index=pd.Index(ids, name="sample_id"))
