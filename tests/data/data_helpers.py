"""Small helpers shared by the data tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from middo_core.sample import Sample
from middo_core.status import workspace_status
from middo_core.store.samples import dataset, row_to_sample

ALPACA = [
    {"instruction": "Add 2 and 3.", "input": "", "output": "2 + 3 = 5."},
    {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"},
    {"instruction": "Continue the story.", "input": "", "output": "And then the dragon slept.",
     "system": "You are a storyteller.",
     "history": [["Tell me a story.", "Once upon a time there was a dragon."],
                 ["What did it do?", "It guarded a pile of gold."]]},
    {"instruction": "Say hello in Japanese ✓", "input": "", "output": "こんにちは"},
]

SHAREGPT = [
    {"conversations": [{"from": "human", "value": "Hi!"}, {"from": "gpt", "value": "Hello!"}]},
    {"conversations": [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "What is 2 + 2?"}, {"from": "gpt", "value": "4"},
        {"from": "human", "value": "And times 3?"}, {"from": "gpt", "value": "12"}]},
]

OPENAI = [
    {"messages": [{"role": "user", "content": "Name a colour."},
                  {"role": "assistant", "content": "Blue."}]},
    {"messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Capital of Peru?"}, {"role": "assistant", "content": "Lima."},
        {"role": "user", "content": "And of Chile?"}, {"role": "assistant", "content": "Santiago."}]},
]


def write_json(path: Path, records: Any) -> Path:
    path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")
    return path


def store_state(ws) -> tuple[int, dict]:
    state = workspace_status(ws)
    return state["samples"], state["dataset_sizes"]


def stored_samples(ws, iteration: int = 0, split: str = "train") -> list[Sample]:
    with ws.store.read() as con:
        frame = dataset(con, iteration, split)
    return [row_to_sample(r) for r in frame.to_dict("records")]


def by_id(samples: list[Sample]) -> dict[str, Sample]:
    return {s.id: s for s in samples}
