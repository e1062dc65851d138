"""Word-level diff of two texts as HTML that is safe to render.

Every word is HTML-escaped first, so text from the data can never become markup; only the
<ins>/<del> tags added here are markup.
"""

from __future__ import annotations

import difflib
import html
import re

_TOKENS = re.compile(r"\s+|[^\s]+")


def _tokens(text: str) -> list[str]:
    return _TOKENS.findall(text or "")


def word_diff(old: str, new: str) -> tuple[str, str]:
    """(old_html, new_html): removed words wrapped in <del>, added words in <ins>."""
    a, b = _tokens(old), _tokens(new)
    left: list[str] = []
    right: list[str] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        old_part = html.escape("".join(a[i1:i2]))
        new_part = html.escape("".join(b[j1:j2]))
        if op == "equal":
            left.append(old_part)
            right.append(new_part)
            continue
        if old_part:
            left.append(f"<del>{old_part}</del>")
        if new_part:
            right.append(f"<ins>{new_part}</ins>")
    return "".join(left), "".join(right)


def change_ratio(old: str, new: str) -> float:
    """Share of words changed (0: identical, 1: nothing in common)."""
    matcher = difflib.SequenceMatcher(a=_tokens(old), b=_tokens(new), autojunk=False)
    return 1.0 - matcher.ratio()
