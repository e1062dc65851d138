"""Reading an LLM answer into a prompt or a response, or a reason why it cannot be used.

A rewrite is the text after the last marker, stripped of wrapping quotes and emphasis. It is
rejected when it is empty, a refusal, a copy of its source, carries template text, or is too
long. Without the marker it is rejected too, unless the lenient fallback is on: then the last
paragraph is taken and the proposal records that it was. Nothing here returns a null as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Openings of a refusal, at the start of an answer (any quote or emphasis stripped first).
_REFUSAL = re.compile(
    r"^(i'?m sorry|i am sorry|sorry, (but )?i|i apologi[sz]e|i can'?t|i cannot|i can not|"
    r"i won'?t|i will not|i'?m (not able|unable)|i am (not able|unable)|as an ai\b)",
    re.IGNORECASE,
)
_PLACEHOLDER = re.compile(r"\{(prompt|hints|marker|number)\}")
_WRAP_PAIRS = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "`": "`", "<<<": ">>>"}


@dataclass(frozen=True)
class Parsed:
    text: str | None  # the usable text, or None with a reason
    reason: str | None = None
    lenient: bool = False  # taken without the marker (recorded with the proposal)

    @property
    def ok(self) -> bool:
        return self.text is not None


def clean(text: str) -> str:
    """Strip whitespace, markdown emphasis and wrapping quotes or fences, repeatedly."""
    prev = None
    text = text.strip()
    while text != prev:
        prev = text
        text = re.sub(r"^```[a-zA-Z]*\n?|\n?```$", "", text).strip()
        text = text.strip("*_ \t\r\n")
        for left, right in _WRAP_PAIRS.items():
            if text.startswith(left) and text.endswith(right) and len(text) >= len(left) + len(right):
                text = text[len(left): len(text) - len(right)].strip()
    return text


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.match(clean(text)))


def parse_rewrite(raw: str | None, marker: str, labels: list[str], sources: list[str],
                  max_chars: int = 4000, lenient: bool = False) -> Parsed:
    """The new prompt in `raw` (after the last `marker`). `sources[0]` is the prompt it was
    written from; later entries are hint examples it must not copy."""
    if raw is None or not raw.strip():
        return Parsed(None, "empty answer")
    at = raw.rfind(marker)
    used_lenient = False
    if at >= 0:
        text = clean(raw[at + len(marker):])
    elif lenient:
        paragraphs = [p for p in re.split(r"\n\s*\n", raw.strip()) if p.strip()]
        text, used_lenient = clean(paragraphs[-1]), True
    else:
        if is_refusal(raw):
            return Parsed(None, f"the model refused: {_quote(raw)}")
        return Parsed(None, f"no '{marker}' marker in the answer")
    if not text:
        return Parsed(None, f"nothing after the '{marker}' marker")
    if is_refusal(text):
        return Parsed(None, f"the model refused: {_quote(text)}")
    leak = _leak(text, marker, labels)
    if leak:
        return Parsed(None, f"template text leaked into the rewrite: {leak!r}")
    norm = _norm(text)
    if sources and norm == _norm(sources[0]):
        return Parsed(None, "identical to the source prompt")
    if any(norm == _norm(s) for s in sources[1:]):
        return Parsed(None, "copies one of the hint examples")
    if len(text) > max_chars:
        return Parsed(None, f"rewrite too long ({len(text):,} characters, limit {max_chars:,})")
    return Parsed(text, None, used_lenient)


def parse_response(raw: str | None, max_chars: int = 16000) -> Parsed:
    if raw is None or not raw.strip():
        return Parsed(None, "empty response")
    text = raw.strip()
    if is_refusal(text):
        return Parsed(None, f"the model refused to respond: {_quote(text)}")
    if len(text) > max_chars:
        return Parsed(None, f"response too long ({len(text):,} characters, limit {max_chars:,})")
    return Parsed(text)


def _leak(text: str, marker: str, labels: list[str]) -> str | None:
    if marker.strip() and marker.strip() in text:
        return marker.strip()
    for token in ("<<<", ">>>"):
        if token in text:
            return token
    found = _PLACEHOLDER.search(text)
    if found:
        return found.group(0)
    for line in text.splitlines():
        stripped = line.lstrip("#*-> \t")
        for label in labels:
            if label and stripped.startswith(label):
                return label
    return None


def _quote(text: str, n: int = 60) -> str:
    one_line = " ".join(text.split())
    return repr(one_line[:n] + ("..." if len(one_line) > n else ""))
