"""Rendering one proposal: original left, proposal right, changed words marked. Text stays text."""

from __future__ import annotations

import streamlit as st

from middo_core.textdiff import word_diff

DIFF_CSS = """
<style>
.middo-diff { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 0.9rem;
  border: 1px solid #e3e6ea; border-radius: 6px; padding: 0.6rem; background: #fbfbfc; }
.middo-diff ins { background: #d9f2dc; text-decoration: none; }
.middo-diff del { background: #f9d7d5; }
.middo-label { color: #6b7280; font-size: 0.8rem; margin: 0.4rem 0 0.1rem 0; }
</style>
"""

# Keys a / e / r / j / k click the review buttons (found by their st-key-* class); typing in a
# text field is left alone. Constant script: no data ever goes into it.
SHORTCUTS_JS = """
<script>
(function () {
  const doc = window.parent ? window.parent.document : document;
  if (doc.__middoReviewKeys) return;
  doc.__middoReviewKeys = true;
  const keys = {a: "review_accept", e: "review_edit", r: "review_reject", j: "review_next", k: "review_prev"};
  doc.addEventListener("keydown", function (ev) {
    const t = ev.target;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
    const key = keys[ev.key];
    if (!key) return;
    const btn = doc.querySelector(".st-key-" + key + " button");
    if (btn && !btn.disabled) { ev.preventDefault(); btn.click(); }
  });
})();
</script>
"""


def render_shortcuts() -> None:
    st.html(SHORTCUTS_JS, unsafe_allow_javascript=True)


def _block(label: str, body_html: str) -> str:
    return f'<div class="middo-label">{label}</div><div class="middo-diff">{body_html}</div>'


def render_diff(original: dict, proposal: dict, diff: bool = True,
                titles: tuple[str, str] = ("Original", "Proposal")) -> None:
    """Two columns, field by field; the diff HTML escapes every word before marking it."""
    left, right = st.columns(2)
    lhtml, rhtml = [DIFF_CSS], [DIFF_CSS]
    for field in ("instruction", "input", "output"):
        old, new = str(original.get(field) or ""), str(proposal.get(field) or "")
        if not old and not new:
            continue
        if diff:
            a, b = word_diff(old, new)
        else:
            a, b = word_diff(old, old)[0], word_diff(new, new)[0]
        lhtml.append(_block(field, a))
        rhtml.append(_block(field, b))
    with left:
        st.markdown(f"**{titles[0]}**")
        st.html("".join(lhtml))
    with right:
        st.markdown(f"**{titles[1]}**")
        st.html("".join(rhtml))


def render_sample_text(title: str, sample: dict) -> None:
    """A sample shown verbatim (st.text never interprets markdown or HTML)."""
    st.markdown(f"**{title}**")
    for field in ("instruction", "input", "output"):
        value = sample.get(field)
        if value:
            st.caption(field)
            st.text(str(value))
