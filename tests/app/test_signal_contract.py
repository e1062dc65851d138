"""A new signal is one class and its registration: diagnosed, cached, exported and plotted."""

from __future__ import annotations

from typing import ClassVar, Literal

import pandas as pd
import pytest
from studio_helpers import open_app, write_signals
from typer.testing import CliRunner

from middo_core.cli import app
from middo_core.diagnose import diagnose
from middo_core.signals.base import SIGNALS, Role, Signal, registered
from middo_core.store.signals import load_signals


class ResponseWords(Signal):
    """Toy signal: the number of words in each response (no model)."""

    name: Literal["response_words"] = "response_words"
    columns: ClassVar[tuple[str, ...]] = ("response_words",)
    role: ClassVar[Role | None] = None
    computed: ClassVar[int] = 0  # samples seen by compute, across instances

    def compute(self, batch, model, progress=None) -> pd.DataFrame:
        ResponseWords.computed += len(batch)
        return pd.DataFrame({"response_words": [len(s.output.split()) for s in batch]},
                            index=[s.id for s in batch])


@pytest.fixture
def toy_signal():
    registered()
    SIGNALS.register(ResponseWords)
    ResponseWords.computed = 0
    yield ResponseWords
    SIGNALS.unregister("response_words")


def test_a_registered_toy_signal_is_diagnosed_cached_exported_and_plotted(studio_ws, toy_signal,
                                                                          tmp_path):
    ws, samples = studio_ws
    write_signals(ws, 0, [s.id for s in samples])  # the three axes, as a diagnosis leaves them
    rep = diagnose(ws, 0, signals=("response_words",))
    assert rep.computed["response_words"] == len(samples) == toy_signal.computed
    with ws.store.read() as con:
        frame = load_signals(con, 0).set_index("sample_id")
    words = {s.id: len(s.output.split()) for s in samples}
    assert frame["response_words"].to_dict() == words
    assert frame["diversity"].notna().all()  # the other signals' values stay

    again = diagnose(ws, 0, signals=("response_words",))  # served from the signal cache
    assert again.computed["response_words"] == 0 and toy_signal.computed == len(samples)

    out = tmp_path / "signals.csv"
    result = CliRunner().invoke(app, ["signals", str(ws.root), "--out", str(out), "--iteration", "0"])
    assert result.exit_code == 0, result.output
    exported = pd.read_csv(out).set_index("id")
    assert exported["response_words"].to_dict() == words

    at = open_app(ws.root, "diagnose")
    assert not at.exception
    assert "Other signals" in [h.value for h in at.subheader]
    charts = [c for c in at.get("plotly_chart") if "response words" in c.proto.spec]
    assert charts  # its histogram is drawn


def test_an_unregistered_signal_is_refused_by_name(studio_ws):
    ws, _ = studio_ws
    with pytest.raises(Exception, match="response_words"):
        diagnose(ws, 0, signals=("response_words",))
