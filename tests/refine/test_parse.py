"""What counts as a usable rewrite or response, and the reason given when it is not."""

from __future__ import annotations

import pytest

from middo_core.refine.parse import parse_response, parse_rewrite

SRC = ["Find the mode of 23, 16, 22, 19, 24, 21, 16.", "Find the mean of 4, 8, 15."]
LABELS = ["Step 1", "Step 2", "Step 3", "Step 4"]


def rw(raw, **kw):
    return parse_rewrite(raw, "FINAL PROMPT:", LABELS, SRC, **kw)


def test_takes_the_text_after_the_last_marker_without_wrapping_quotes():
    raw = ("Step 1: use small numbers. FINAL PROMPT: is the marker.\nStep 4: review.\n"
           "FINAL PROMPT:\n  **\"Find the number that appears most often: 3, 7, 2, 3.\"**  \n")
    parsed = rw(raw)
    assert parsed.ok and parsed.text == "Find the number that appears most often: 3, 7, 2, 3."
    assert not parsed.lenient


@pytest.mark.parametrize("raw, reason", [
    ("", "empty answer"),
    ("   \n", "empty answer"),
    ("FINAL PROMPT:\n   ", "nothing after the 'FINAL PROMPT:' marker"),
    ("FINAL PROMPT: ''", "nothing after the 'FINAL PROMPT:' marker"),
    ("Here is my rewrite: count apples.", "no 'FINAL PROMPT:' marker in the answer"),
    ("FINAL PROMPT:\nfind the MODE of 23, 16, 22, 19, 24, 21, 16", "identical to the source prompt"),
    ("FINAL PROMPT:\nFind the mean of 4, 8, 15.", "copies one of the hint examples"),
    ("FINAL PROMPT:\nStep 3: Find the mode of 1, 1, 2.", "template text leaked into the rewrite: 'Step 3'"),
    ("FINAL PROMPT:\nAnswer this: <<< {prompt} >>>", "template text leaked into the rewrite: '<<<'"),
])
def test_unusable_rewrites_fail_with_a_reason(raw, reason):
    parsed = rw(raw)
    assert parsed.text is None and parsed.reason == reason


@pytest.mark.parametrize("raw", [
    "I'm sorry, but I can't help with that request.",
    "FINAL PROMPT:\nI cannot rewrite this prompt.",
    "FINAL PROMPT: \"As an AI language model, I won't.\"",
])
def test_refusals_fail(raw):
    parsed = rw(raw)
    assert parsed.text is None and parsed.reason.startswith("the model refused")


def test_length_bound_and_lenient_fallback():
    assert rw("FINAL PROMPT:\n" + "word " * 100, max_chars=100).reason.startswith("rewrite too long")
    lenient = rw("Some thinking.\n\nCount the red apples in a basket.", lenient=True)
    assert lenient.ok and lenient.lenient and lenient.text == "Count the red apples in a basket."


def test_responses():
    assert parse_response("  The mode is 16.  ").text == "The mode is 16."
    assert parse_response("").reason == "empty response"
    assert parse_response(None).reason == "empty response"
    assert parse_response("I'm sorry, I can't answer that.").reason.startswith("the model refused")
    assert parse_response("x" * 50, max_chars=10).reason.startswith("response too long")
