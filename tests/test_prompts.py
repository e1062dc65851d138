"""Prompt templates: found in prompts/, hashed by content, split into sections, rendered by name."""

from __future__ import annotations

import hashlib

import pytest

from middo_core.prompts import PROMPTS_DIR, TemplateError, load_template, render


def test_templates_ship_in_the_repository_prompts_folder():
    assert PROMPTS_DIR.name == "prompts" and (PROMPTS_DIR / "judge_response.txt").is_file()
    t = load_template("judge_response")
    assert t.hash == hashlib.sha256(t.text.encode()).hexdigest()[:12]
    assert load_template("judge_response.txt").hash == t.hash


def test_missing_template_names_the_folder_and_the_known_ones(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("x")
    monkeypatch.setenv("MIDDO_PROMPTS_DIR", str(tmp_path))
    with pytest.raises(TemplateError, match=r"no prompt template 'b' in .* \(known: a\)"):
        load_template("b")


def test_sections_and_render_only_touch_named_fields(tmp_path, monkeypatch):
    (tmp_path / "t.txt").write_text("=== one ===\nHello {name}, keep {this} and {\"json\": 1}\n\n=== two ===\nBye\n")
    monkeypatch.setenv("MIDDO_PROMPTS_DIR", str(tmp_path))
    t = load_template("t")
    assert list(t.sections()) == ["one", "two"]
    assert render(t.section("one"), name="Ada") == 'Hello Ada, keep {this} and {"json": 1}'
    with pytest.raises(TemplateError, match="no section 'three'"):
        t.section("three")
    (tmp_path / "flat.txt").write_text("no sections")
    with pytest.raises(TemplateError, match="no '=== name ===' sections"):
        load_template("flat").sections()
