"""A quality proxy that works with small models: is the response relevant, and is it finished?

For each sample, the mean per-token loss of the response given its instruction (L_cond, the
complexity signal's loss under the judge model) and given an empty instruction (L_uncond), under
the same prompt format, both from the shared loss pass. IFD = L_cond / L_uncond (the
"instruction-following difficulty" of Li et al., 2024); pointwise mutual information per token =
L_uncond - L_cond. A response unrelated to its instruction gains nothing from it (IFD ~ 1).
The same pass gives P(end of turn | instruction, response): near 0 when the response stops
mid-way. quality = 10 * clip(1 - IFD, 0, 1) * P(end of turn): relevance times completion, on
the 0-10 scale of the judge. docs/BENCHMARKS.md ("Quality judge") measures it against the judge.
The `pmi-ppl` mode (the default below 7B parameters before `pmi-novel`, judge_novel.py) adds
a third factor, exp(-L_pre): how plausible the base model, which was not fine-tuned on these
samples, finds the response; quality = 10 x the geometric mean of the three (docs/EVIDENCE.md, "Default quality signal").
"""

from __future__ import annotations

from middo_core.progress import ProgressFn
from middo_core.sample import Sample

STAGE = "quality: instruction-response PMI"


def unconditioned(sample: Sample) -> Sample:
    """The sample's response after an empty user turn (no system prompt, no history)."""
    return Sample(instruction="", output=sample.output)


def end_logprob(loss: float | None, last_nll: float | None, truncated: bool) -> float | None:
    """log P(end of turn) after the response: minus the NLL of its last token, which is the
    turn's end marker. None for an empty response, or when max_len cut the response."""
    return None if loss is None or last_nll is None or truncated else -last_nll


def response_losses(samples: list[Sample], model, tokenizer, prompt_format: str = "chat",
                    max_len: int = 1024, progress: ProgressFn | None = None,
                    counter: dict | None = None) -> list[tuple[float | None, float | None]]:
    """Per sample: mean per-token NLL of the response and log P(end of turn after it).

    The shared loss pass (middo_core.signals.forward), so the values are the complexity signal's
    for the same model and format; the response as encoded ends with the turn's end marker (the
    chat template's, or EOS in the plain format).
    """
    from middo_core.signals.encode import encode_all
    from middo_core.signals.forward import PassOutput, run_pass

    encoded = encode_all(samples, tokenizer, prompt_format, max_len)
    out = PassOutput()
    stats = run_pass(model, encoded, on_chunk=out.extend, progress=progress, stage=STAGE)
    if counter is not None:
        counter["tokens_fed"] = counter.get("tokens_fed", 0) + stats.tokens
        counter["forward_calls"] = counter.get("forward_calls", 0) + stats.batches
    by_index = dict(zip(out.index, zip(out.loss, out.last_nll, strict=True), strict=True))
    return [(by_index[i][0], end_logprob(*by_index[i], enc.truncated))
            for i, enc in enumerate(encoded)]


def pmi_scores(samples: list[Sample], model, tokenizer, prompt_format: str = "chat",
               max_len: int = 1024, progress: ProgressFn | None = None,
               counter: dict | None = None):
    """DataFrame by sample id (see `pmi_frame`) from two passes: each sample as it is, and its
    response after an empty user turn."""
    bare = [unconditioned(s) for s in samples]
    res = response_losses(list(samples) + bare, model, tokenizer, prompt_format, max_len, progress,
                          counter)
    return pmi_frame([s.id for s in samples], res[: len(samples)],
                     [r[0] for r in res[len(samples):]])


def pmi_frame(ids: list[str], conditional: list[tuple[float | None, float | None]],
              unconditional: list[float | None], reference: list[float | None] | None = None):
    """DataFrame by sample id: loss_conditional, loss_unconditional, pmi, ifd, end_logprob, quality.

    conditional: (response loss, log P(end of turn)) per sample; unconditional: the response loss
    after an empty user turn. An empty response scores 0. When max_len cut the response its end
    is not seen: end_logprob is NaN and the completion factor 1. reference (the `pmi-ppl` mode):
    the response loss under a reference model (the base model, column loss_reference); quality is
    then 10 x the geometric mean of relevance, completion and exp(-reference loss), the reference
    model's per-token probability of the response. (The plain product ranks the samples the same
    but piles them near 0, where tau = mu + m*sigma with m = -1.5 falls below every score.)
    """
    import numpy as np
    import pandas as pd

    def arr(values):
        return np.array([np.nan if v is None else v for v in values], dtype=float)

    cond, end = arr([c[0] for c in conditional]), arr([c[1] for c in conditional])
    uncond = arr(unconditional)
    ifd = cond / np.maximum(uncond, 1e-6)
    done = np.where(np.isnan(end), 1.0, np.exp(end))
    quality = 10 * np.clip(1 - ifd, 0, 1) * done
    columns = {"loss_conditional": cond, "loss_unconditional": uncond, "pmi": uncond - cond,
               "ifd": ifd, "end_logprob": end}
    if reference is not None:  # the geometric mean of the three factors, on 0-10
        columns["loss_reference"] = arr(reference)
        quality = 10 * np.cbrt(quality / 10 * np.exp(-columns["loss_reference"]))
    return pd.DataFrame({**columns, "quality": np.nan_to_num(quality, nan=0.0)},
                        index=pd.Index(ids, name="sample_id"))
