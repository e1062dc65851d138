"""DuckDB store: schema, migrations, and every query of the project."""

from middo_core.store.db import Store, StoreBusy

__all__ = ["Store", "StoreBusy"]
