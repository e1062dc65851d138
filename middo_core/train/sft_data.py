"""Samples to token ids for supervised fine-tuning: loss on the response tokens only.

The prompt (system, earlier turns, the final user turn and the assistant header) is rendered
with the tokenizer's chat template, or the paper's plain "Human: / Assistant:" layout, and its
labels are -100 so only the final response (and the end-of-turn token) is learned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from middo_core.sample import Sample

IGNORE_INDEX = -100
# Role labels of the plain layout the paper's scripts use (a data format, not an LLM prompt).
PLAIN_USER, PLAIN_ASSISTANT = "Human: ", "Assistant: "


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]
    n_prompt: int  # prompt tokens kept in the window (all masked)
    truncated: bool

    @property
    def n_response(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def _plain_prompt(sample: Sample) -> str:
    parts = [sample.system + "\n\n"] if sample.system else []
    for user, assistant in sample.history:
        parts.append(f"{PLAIN_USER}{user}\n{PLAIN_ASSISTANT}{assistant}\n")
    parts.append(f"{PLAIN_USER}{sample.prompt}\n{PLAIN_ASSISTANT}")
    return "".join(parts)


def render(tokenizer: Any, sample: Sample, prompt_format: str = "chat") -> tuple[str, str]:
    """(prompt text, response text); the response includes the end-of-turn marker."""
    if prompt_format == "chat" and getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(sample.messages(with_response=False), tokenize=False,
                                               add_generation_prompt=True)
        full = tokenizer.apply_chat_template(sample.messages(), tokenize=False)
        if full.startswith(prompt):
            return prompt, full[len(prompt):]
        # A template that rewrites earlier turns (rare): fall back to prompt + response + eos.
    else:
        prompt = _plain_prompt(sample)
    return prompt, sample.output + (tokenizer.eos_token or "")


def prompt_text(tokenizer: Any, sample: Sample, prompt_format: str = "chat") -> str:
    """What the model sees before it answers (for generation-based evaluation)."""
    return render(tokenizer, sample, prompt_format)[0]


def encode(tokenizer: Any, sample: Sample, max_len: int, prompt_format: str = "chat") -> Encoded:
    """Token ids and labels, prompt masked. Prompt and response are tokenized separately so the
    boundary is exact; a long sample keeps its end of prompt and start of response."""
    prompt, response = render(tokenizer, sample, prompt_format)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    truncated = len(p_ids) + len(r_ids) > max_len
    if truncated:
        # Keep at least half the window for the response; cut the prompt from the left.
        keep_r = min(len(r_ids), max(max_len // 2, max_len - len(p_ids)))
        r_ids = r_ids[:keep_r]
        p_ids = p_ids[len(p_ids) - (max_len - keep_r):] if max_len - keep_r > 0 else []
    return Encoded(input_ids=list(p_ids) + list(r_ids),
                   labels=[IGNORE_INDEX] * len(p_ids) + list(r_ids),
                   n_prompt=len(p_ids), truncated=truncated)


class SFTDataset:
    """A list of encoded samples (torch Dataset protocol: __len__ and __getitem__)."""

    def __init__(self, items: list[Encoded]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        item = self.items[i]
        return {"input_ids": item.input_ids, "labels": item.labels}

    @property
    def lengths(self) -> list[int]:
        return [len(x.input_ids) for x in self.items]


def build_dataset(tokenizer: Any, samples: list[Sample], max_len: int,
                  prompt_format: str = "chat") -> tuple[SFTDataset, dict[str, int]]:
    """Encode every sample; samples with no response token left are dropped and counted."""
    items, stats = [], {"samples": len(samples), "truncated": 0, "dropped_empty": 0, "tokens": 0}
    for s in samples:
        enc = encode(tokenizer, s, max_len, prompt_format)
        if enc.n_response == 0:
            stats["dropped_empty"] += 1
            continue
        stats["truncated"] += int(enc.truncated)
        stats["tokens"] += len(enc.input_ids)
        items.append(enc)
    return SFTDataset(items), stats


class PadCollator:
    """Right-pads a batch; padded positions get label -100 and attention 0."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            width = (width + m - 1) // m * m
        ids, labels, mask = [], [], []
        for f in features:
            pad = width - len(f["input_ids"])
            ids.append(f["input_ids"] + [self.pad_token_id] * pad)
            labels.append(f["labels"] + [IGNORE_INDEX] * pad)
            mask.append([1] * len(f["input_ids"]) + [0] * pad)
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                "attention_mask": torch.tensor(mask)}
