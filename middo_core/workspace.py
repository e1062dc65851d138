"""A workspace is a folder: middo.yaml (config), middo.duckdb (store), artifacts/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from middo_core.config import CONFIG_FILE, WorkspaceConfig, load_config, save_config
from middo_core.store import Store

STORE_FILE = "middo.duckdb"


class WorkspaceError(RuntimeError):
    pass


@dataclass
class Workspace:
    root: Path
    config: WorkspaceConfig
    store: Store

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    def artifact_dir(self, *parts: str) -> Path:
        path = self.artifacts.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def save_config(self) -> None:
        save_config(self.config, self.root / CONFIG_FILE)


def init_workspace(root: Path, config: WorkspaceConfig | None = None, exist_ok: bool = False) -> Workspace:
    root = Path(root)
    if (root / STORE_FILE).exists() and not exist_ok:
        raise WorkspaceError(f"{root}: already a workspace (middo.yaml and middo.duckdb exist)")
    root.mkdir(parents=True, exist_ok=True)
    (root / "artifacts").mkdir(exist_ok=True)
    cfg_path = root / CONFIG_FILE
    if config is None:
        config = load_config(cfg_path) if cfg_path.exists() else WorkspaceConfig(name=root.name)
    save_config(config, cfg_path)
    store = Store(root / STORE_FILE)
    store.migrate()
    return Workspace(root=root, config=config, store=store)


def open_workspace(root: Path) -> Workspace:
    root = Path(root)
    if not (root / STORE_FILE).exists() or not (root / CONFIG_FILE).exists():
        raise WorkspaceError(f"{root}: not a Middo workspace (run `middo init {root}` first)")
    config = load_config(root / CONFIG_FILE)
    store = Store(root / STORE_FILE)
    try:
        store.migrate()
    except duckdb.Error as exc:  # a damaged or foreign file: one sentence, not DuckDB's text
        reason = " ".join(str(exc).replace(f'"{store.path}"', "").split()).strip(" !")
        reason = reason.removeprefix("IO Error: ").replace(" :", ":")
        raise WorkspaceError(f"{store.path}: cannot open the store, the file is damaged or not a "
                             f"Middo store ({reason}); restore it from a backup") from exc
    return Workspace(root=root, config=config, store=store)
