"""Store connections: a memory limit for large transactions."""

from __future__ import annotations

import pytest

from middo_core.store.db import Store


def test_a_memory_limit_applies_inside_the_transaction_and_bad_ones_are_refused(tmp_path):
    store = Store(tmp_path / "m.duckdb")
    with store.write(memory_limit="256MB") as con:
        value = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    assert value.replace(" ", "").upper().startswith(("256", "244")), value  # MB or MiB shown
    with pytest.raises(ValueError, match="like '512MB'"), store.write(memory_limit="1; DROP TABLE x"):
        pass
