"""The review diff: changed words marked, and text from the data never becomes markup."""

from __future__ import annotations

from middo_core.textdiff import change_ratio, word_diff


def test_changed_words_are_marked_on_each_side():
    old, new = word_diff("Find the mode of 23, 16, 22", "Find the number that appears most in 3, 7, 2")
    assert "<del>" in old and "<ins>" in new
    assert old.startswith("Find the ") and new.startswith("Find the ")
    assert "<ins>" not in old and "<del>" not in new


def test_markup_in_the_data_is_escaped_before_marking():
    payload = "<script>alert(1)</script> <img src=x onerror=alert(1)> ![x](http://e.com/p.png)"
    old, new = word_diff("plain text", payload)
    for side in (old, new):
        assert "<script" not in side and "<img" not in side
    assert "&lt;script&gt;" in new and "&lt;img" in new


def test_identical_texts_have_no_marks_and_no_change():
    old, new = word_diff("same words here", "same words here")
    assert old == new == "same words here"
    assert change_ratio("a b c", "a b c") == 0.0
    assert change_ratio("alpha beta gamma", "one two three") > 0.5
