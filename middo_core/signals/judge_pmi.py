"""A quality proxy that works with small models: is the response relevant, and is it finished?

For each sample, the mean per-token loss of the response given its instruction (L_cond) and given
an empty instruction (L_uncond), under the same chat format. IFD = L_cond / L_uncond (the
"instruction-following difficulty" of Li et al., 2024); pointwise mutual information per token =
L_uncond - L_cond. A response unrelated to its instruction gains nothing from it (IFD ~ 1).
The same pass gives P(end of turn | instruction, response): near 0 when the response stops
mid-way. quality = 10 * clip(1 - IFD, 0, 1) * P(end of turn): relevance times completion, on
the 0-10 scale of the judge. docs/BENCHMARKS.md ("Quality judge") measures it against the judge.
"""

from __future__ import annotations

from middo_core.progress import ProgressFn, report
from middo_core.sample import Sample

STAGE = "quality: instruction-response PMI"


def _head(tokenizer, user: str, prompt_format: str) -> str:
    if prompt_format == "chat" and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )
    return f"Human: {user}\nAssistant: "


def end_token(tokenizer, prompt_format: str) -> int:
    """The token that closes an assistant turn (what follows the reply in the chat format)."""
    if prompt_format == "chat" and getattr(tokenizer, "chat_template", None):
        marker = "\x00MIDDO\x00"
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}], tokenize=False
        )
        after = text.split(marker, 1)[1]
        ids = tokenizer(after, add_special_tokens=False)["input_ids"]
        if ids:
            return ids[0]
    return tokenizer.eos_token_id


def _pair(tokenizer, user: str, response: str, prompt_format: str, max_len: int):
    """(ids, number of prompt ids): the chat-formatted turn, the response cut to fit max_len."""
    prompt = tokenizer(_head(tokenizer, user, prompt_format), add_special_tokens=False)["input_ids"]
    reply = tokenizer(response, add_special_tokens=False)["input_ids"]
    prompt = prompt[-(max_len // 2) :] if len(prompt) + len(reply) > max_len else prompt
    reply = reply[: max(max_len - len(prompt), 1)]
    return prompt + reply, len(prompt)


def response_losses(
    texts: list[tuple[str, str]], model, tokenizer, prompt_format: str = "chat",
    max_len: int = 1024, batch_size: int = 8, progress: ProgressFn | None = None,
    counter: dict | None = None,
) -> list[tuple[float, float]]:
    """Per (user, response) pair: mean per-token NLL of the response, log P(end of turn after it).

    The LM head runs on the response positions only.
    """
    import torch
    import torch.nn.functional as F

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    end = end_token(tokenizer, prompt_format)
    dev = model.device
    out: list[tuple[float, float]] = []
    for start in range(0, len(texts), batch_size):
        pairs = [_pair(tokenizer, u, r, prompt_format, max_len) for u, r in texts[start : start + batch_size]]
        width = max(len(ids) for ids, _ in pairs)
        ids = torch.full((len(pairs), width), pad, dtype=torch.long, device=dev)
        mask = torch.zeros_like(ids)
        for i, (row, _) in enumerate(pairs):
            ids[i, : len(row)] = torch.tensor(row, device=dev)
            mask[i, : len(row)] = 1
        with torch.inference_mode():
            hidden = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
            head = model.get_output_embeddings()
            for i, (row, n_prompt) in enumerate(pairs):
                # position t predicts token t+1: from n_prompt-1 on, the response, then the end
                logits = head(hidden[i, n_prompt - 1 : len(row)]).float()
                target = ids[i, n_prompt : len(row)]
                nll = float(F.cross_entropy(logits[:-1], target)) if len(target) else 0.0
                out.append((nll, float(torch.log_softmax(logits[-1], -1)[end])))
        if counter is not None:
            counter["tokens_fed"] = counter.get("tokens_fed", 0) + int(mask.sum())
            counter["forward_calls"] = counter.get("forward_calls", 0) + 1
        report(progress, STAGE, min(start + batch_size, len(texts)), len(texts))
    return out


def pmi_scores(
    samples: list[Sample], model, tokenizer, prompt_format: str = "chat", max_len: int = 1024,
    batch_size: int = 8, progress: ProgressFn | None = None, counter: dict | None = None,
):
    """DataFrame by sample id: loss_conditional, loss_unconditional, pmi, ifd, end_logprob, quality.

    Two passes per sample (with and without the instruction), LM head on response tokens only.
    """
    import numpy as np
    import pandas as pd

    texts = [(s.prompt, s.output) for s in samples] + [("", s.output) for s in samples]
    res = response_losses(texts, model, tokenizer, prompt_format, max_len, batch_size, progress, counter)
    cond = np.array([r[0] for r in res[: len(samples)]])
    uncond = np.array([r[0] for r in res[len(samples) :]])
    ifd = cond / np.maximum(uncond, 1e-6)
    end = np.array([r[1] for r in res[: len(samples)]])
    return pd.DataFrame(
        {
            "loss_conditional": cond,
            "loss_unconditional": uncond,
            "pmi": uncond - cond,
            "ifd": ifd,
            "end_logprob": end,
            "quality": 10 * np.clip(1 - ifd, 0, 1) * np.exp(end),
        },
        index=pd.Index([s.id for s in samples], name="sample_id"),
    )
