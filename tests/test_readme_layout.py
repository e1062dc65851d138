"""The README's layout tree names every module and package of the library and every file of the
Studio's top level, so a newcomer reading it finds each file it lists and each file it should."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def layout() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return text.split("## Layout", 1)[1].split("```", 2)[1]


def named(tree: str, name: str) -> bool:
    return re.search(rf"^\s+{re.escape(name)}(/|\s)", tree, re.MULTILINE) is not None


def test_every_library_module_is_in_the_tree():
    tree = layout()
    entries = [p.name for p in (REPO / "middo_core").iterdir()
               if not p.name.startswith("__") and (p.is_dir() or p.suffix == ".py")]
    missing = [e for e in entries if not named(tree, e)]
    assert not missing, f"README layout lacks {missing}"


def test_every_studio_file_is_in_the_tree_and_every_listed_file_exists():
    tree = layout()
    entries = [p.name for p in (REPO / "app").iterdir() if not p.name.startswith("__")]
    assert not [e for e in entries if not named(tree, e)]
    for listed in re.findall(r"^\s+([\w.]+\.py)\s", tree, re.MULTILINE):
        found = [hit for top in ("middo_core", "app") for hit in (REPO / top).glob(f"**/{listed}")]
        assert found, f"README layout lists {listed}, which does not exist"
