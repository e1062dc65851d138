"""Writing a benchmark's section of docs/BENCHMARKS.md (the scripts' --docs option)."""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"


def replace_section(section: str, body: str, docs: Path = DOCS) -> None:
    """Put `body` (which starts with the `section` heading) in place of that section, or append it."""
    text = docs.read_text(encoding="utf-8") if docs.exists() else "# Benchmarks\n"
    body = body.rstrip("\n") + "\n"
    if section in text:
        start = text.index(section)
        nxt = text.find("\n## ", start + len(section))
        text = text[:start] + body + ("\n" + text[nxt + 1:] if nxt != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + body
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(text, encoding="utf-8")
