"""Prompt templates: text files in the repository's `prompts/` folder, versioned by content hash.

A template may hold named sections, each opened by a line `=== name ===`; placeholders are
`{name}` and only the names passed to `render` are replaced, so other braces stay as written.
The project runs from an editable install, so the folder is found next to the package.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"
_SECTION = re.compile(r"^=== *([A-Za-z0-9_\-]+) *===[ \t]*$", re.MULTILINE)


class TemplateError(ValueError):
    pass


def prompts_dir() -> Path:
    """The templates folder; MIDDO_PROMPTS_DIR overrides it (a curator's edited copy, tests)."""
    return Path(os.environ.get("MIDDO_PROMPTS_DIR", PROMPTS_DIR))


@dataclass(frozen=True)
class Template:
    name: str
    text: str

    @cached_property
    def hash(self) -> str:
        """sha256 of the content, 12 hex digits: stored with every result the template produced."""
        return text_hash(self.text)

    def sections(self) -> dict[str, str]:
        """`=== name ===` sections, in file order, each without its surrounding blank lines."""
        parts = _SECTION.split(self.text)
        if len(parts) == 1:
            raise TemplateError(f"template '{self.name}' has no '=== name ===' sections")
        return {parts[i]: parts[i + 1].strip("\n") for i in range(1, len(parts), 2)}

    def render(self, **fields: str) -> str:
        return render(self.text, **fields)

    def section(self, name: str) -> str:
        sections = self.sections()
        if name not in sections:
            raise TemplateError(
                f"template '{self.name}' has no section '{name}' (has: {', '.join(sections)})"
            )
        return sections[name]


def render(text: str, **fields: str) -> str:
    """Replace `{key}` for the given keys only."""
    for key, value in fields.items():
        text = text.replace("{" + key + "}", value)
    return text


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def load_template(name: str) -> Template:
    """Read `prompts/<name>.txt` (the extension may be given or left out)."""
    folder = prompts_dir()
    path = folder / (name if name.endswith(".txt") else f"{name}.txt")
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.txt"))) or "none"
        raise TemplateError(f"no prompt template '{name}' in {folder} (known: {known})")
    return Template(name=path.stem, text=path.read_text(encoding="utf-8"))
