"""Small workspaces with a learnable dataset for training and evaluation tests."""

from __future__ import annotations

import pytest

from middo_core.sample import Sample

COUNTRIES = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"),
             ("Egypt", "Cairo"), ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Chile", "Santiago"),
             ("Cuba", "Havana"), ("Greece", "Athens"), ("Norway", "Oslo"), ("Poland", "Warsaw")]


def capital_samples(repeat: int = 1) -> list[Sample]:
    """A small, very regular task: a tiny model learns its pattern within a few dozen steps."""
    out = []
    for r in range(repeat):
        for country, city in COUNTRIES:
            out.append(Sample(instruction=f"What is the capital of {country}?",
                              input="" if r == 0 else f"(question {r})",
                              output=f"The capital of {country} is {city}."))
    return out


def fill_workspace(ws, train: list[Sample], heldout: list[Sample] | None = None,
                   iteration: int = 0) -> None:
    from middo_core.store import samples as store

    with ws.store.write() as con:
        store.insert_samples(con, store.samples_frame(train + (heldout or [])))
        store.set_members(con, iteration, [s.id for s in train], "train")
        if heldout:
            store.set_members(con, iteration, [s.id for s in heldout], "heldout")


@pytest.fixture
def small_workspace(workspace_factory, tiny_model):
    """A workspace on the tiny model: D(0) = 36 capital questions, 4 held out."""

    def make(name: str = "ws", train_overrides: dict | None = None, repeat: int = 3):
        from middo_core.config import TrainConfig

        train_cfg = TrainConfig(preset="custom", learning_rate=3e-3, batch_size=4, max_len=96,
                                warmup_ratio=0.0, scheduler="constant", **(train_overrides or {}))
        ws = workspace_factory(name, base_model=tiny_model, train=train_cfg)
        samples = capital_samples(repeat)
        heldout = [Sample(instruction=f"What is the capital of {c}?", input="(held out)",
                          output=f"The capital of {c} is {city}.") for c, city in
                   [("France", "Paris"), ("Japan", "Tokyo"), ("Peru", "Lima"), ("Cuba", "Havana")]]
        fill_workspace(ws, samples, heldout)
        return ws

    return make
