"""Turning a sample into token ids for the loss pass: prompt, instruction span, response.

The sequence is tokenized as segments (prefix | instruction+input | rest of prompt | response) so
the pass knows exactly which positions belong to the response (loss) and which to the
instruction and input (embedding), with no re-tokenization guesswork.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal

from middo_core.sample import Sample

PromptFormat = Literal["chat", "plain"]
PLAIN_TEMPLATE = "format_plain"


@dataclass
class Encoded:
    ids: list[int]
    prompt_len: int  # ids[:prompt_len] is the prompt; the rest is the response
    span: tuple[int, int]  # instruction+input tokens (embedding pooling), within the prompt
    truncated: bool
    empty_response: bool

    @property
    def response_len(self) -> int:
        return len(self.ids) - self.prompt_len


class FormatError(ValueError):
    pass


def _plain_sections() -> dict[str, str]:
    from middo_core.prompts import load_template

    return load_template(PLAIN_TEMPLATE).sections()


def format_hash(tokenizer, prompt_format: PromptFormat) -> str:
    """Identifies how text becomes tokens (template + vocabulary): part of every cache key."""
    if prompt_format == "plain":
        template = json.dumps(_plain_sections(), sort_keys=True)
    elif prompt_format == "chat":
        template = str(getattr(tokenizer, "chat_template", None) or "")
        if not template:
            raise FormatError("signals.prompt_format is 'chat' but the tokenizer has no chat "
                              "template: set signals.prompt_format: plain")
    else:
        raise FormatError(f"unknown prompt format {prompt_format!r} (use chat or plain)")
    vocab = f"{type(tokenizer).__name__}:{len(tokenizer)}:{tokenizer.eos_token}:{tokenizer.bos_token}"
    return hashlib.sha256(f"{prompt_format}\n{template}\n{vocab}".encode()).hexdigest()[:16]


def render(sample: Sample, tokenizer, prompt_format: PromptFormat) -> tuple[str, str, str, str]:
    """(prefix, content, suffix, response): prefix+content+suffix is the prompt text."""
    content = sample.prompt
    if prompt_format == "plain":
        sec = _plain_sections()
        turns = [sec["system"].replace("{text}", sample.system)] if sample.system else []
        for user, assistant in sample.history:
            turns.append(sec["user"].replace("{text}", user))
            turns.append(sec["assistant"].replace("{text}", assistant))
        user_line = sec["user"]
        head, _, tail = user_line.partition("{text}")
        turns.append(head)
        prefix = "\n".join(turns)
        suffix = tail + "\n" + sec["generation"]
        response = sec["response"].replace("{text}", sample.output)
        return prefix, content, suffix, response
    prompt = tokenizer.apply_chat_template(sample.messages(with_response=False), tokenize=False,
                                           add_generation_prompt=True)
    full = tokenizer.apply_chat_template(sample.messages(with_response=True), tokenize=False)
    if not full.startswith(prompt):
        raise FormatError("the chat template renders the conversation with a different prompt "
                          "than the prompt alone: use signals.prompt_format: plain")
    response = full[len(prompt):]
    at = response.find(sample.output) if sample.output else -1
    if at >= 0:  # drop whitespace after the template's end marker: it is not part of the answer
        end = at + len(sample.output)
        response = response[:end] + response[end:].rstrip()
    cut = prompt.rfind(content) if content else -1
    if cut < 0:  # the template rewrote the message: pool over the whole prompt instead
        return prompt, "", "", response
    return prompt[:cut], content, prompt[cut + len(content):], response


def encode(sample: Sample, tokenizer, prompt_format: PromptFormat, max_len: int) -> Encoded:
    return encode_all([sample], tokenizer, prompt_format, max_len)[0]


def encode_all(samples: list[Sample], tokenizer, prompt_format: PromptFormat,
               max_len: int) -> list[Encoded]:
    """Encode many samples; each segment kind is tokenized in one batched tokenizer call."""
    parts = [_split_space(*render(s, tokenizer, prompt_format)) for s in samples]
    segs = [_tok_many(tokenizer, [p[j] for p in parts]) for j in range(4)]
    bos = (prompt_format == "plain" and tokenizer.bos_token_id is not None and _adds_bos(tokenizer))
    eos = tokenizer.eos_token_id if prompt_format == "plain" else None
    out = []
    for i, sample in enumerate(samples):
        head = ([tokenizer.bos_token_id] if bos else []) + segs[0][i]
        prompt = head + segs[1][i] + segs[2][i]
        resp = segs[3][i] + ([eos] if eos is not None else [])
        out.append(_fit(prompt, (len(head), len(head) + len(segs[1][i])), resp,
                        not sample.output.strip(), max_len))
    return out


def _split_space(prefix: str, content: str, suffix: str, response: str):
    # keep "Human: word" on one token boundary, not " " + "word"
    if prefix.endswith(" ") and content:
        stripped = prefix.rstrip(" ")
        prefix, content = stripped, prefix[len(stripped):] + content
    return prefix, content, suffix, response


def _tok_many(tokenizer, texts: list[str]) -> list[list[int]]:
    nonempty = [t for t in texts if t]
    ids = iter(tokenizer(nonempty, add_special_tokens=False)["input_ids"] if nonempty else [])
    return [list(next(ids)) if t else [] for t in texts]


def _fit(prompt: list[int], span: tuple[int, int], resp: list[int], empty: bool,
         max_len: int) -> Encoded:
    truncated = len(prompt) + len(resp) > max_len
    if truncated:
        # keep the start of the response (right truncation, as the paper's scripts); when the
        # prompt alone fills the window, drop its oldest tokens to keep a quarter for the response
        keep_r = min(len(resp), max(max_len - len(prompt), max_len // 4))
        dropped = len(prompt) - (max_len - keep_r)
        if dropped > 0:
            prompt = prompt[dropped:]
            span = (max(0, span[0] - dropped), max(0, span[1] - dropped))
        resp = resp[:keep_r]
    if span[1] <= span[0]:  # no instruction tokens left: pool over the whole prompt
        span = (0, len(prompt))
    return Encoded(prompt + resp, len(prompt), span, truncated, empty)


def _adds_bos(tokenizer) -> bool:
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id
