"""Refinement operators: each turns a flagged sample (and, for augment, its neighbours) into the
messages of a rewrite request, from a template in prompts/. The response operator writes the
second request, for a fresh response to every new or rewritten prompt."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar, Literal

from middo_core.prompts import Template, load_template
from middo_core.registry import Registry
from middo_core.sample import Sample

Variant = Literal["full", "compact"]


@dataclass(frozen=True)
class Prompted:
    """A rendered request: the user message, the assistant's forced opening, the parse contract."""

    user: str
    prefill: str
    marker: str
    labels: list[str]


@dataclass(frozen=True)
class Operator:
    name: ClassVar[str]
    axis: ClassVar[str]  # the flagged axis it serves
    origin: ClassVar[str]  # samples.origin of what it produces
    template_stem: ClassVar[str]
    variant: Variant = "compact"

    @cached_property
    def template(self) -> Template:
        return load_template(f"{self.template_stem}_{self.variant}")

    def build(self, source: Sample, neighbours: list[Sample] | None = None) -> Prompted:
        t = self.template
        sections = t.sections()
        marker = sections.get("marker", "").strip()
        fields = {"prompt": source.prompt, "marker": marker, "hints": self.hints(t, source, neighbours)}
        labels = [line.strip() for line in sections.get("labels", "").splitlines() if line.strip()]
        return Prompted(user=fill(t.section("user"), **fields),
                        prefill=fill(sections.get("answer", ""), **fields),
                        marker=marker, labels=labels)

    def hints(self, template: Template, source: Sample, neighbours: list[Sample] | None) -> str:
        return ""


def fill(text: str, **fields: str) -> str:
    """Replace `{name}` placeholders in one pass: sample text that happens to contain braces is
    inserted as written and never expanded again."""
    return re.sub(r"\{([a-z_]+)\}", lambda m: fields.get(m.group(1), m.group(0)), text)


OPERATORS: Registry[Operator] = Registry("refinement operator")


@OPERATORS.register
@dataclass(frozen=True)
class Simplify(Operator):
    """Complex samples: an easier prompt that trains the same skill."""

    name: ClassVar[str] = "simplify"
    axis: ClassVar[str] = "complexity"
    origin: ClassVar[str] = "simplified"
    template_stem: ClassVar[str] = "refine_simplify"


@OPERATORS.register
@dataclass(frozen=True)
class Improve(Operator):
    """Low-quality samples: a clear, complete, factual prompt for the same task."""

    name: ClassVar[str] = "improve"
    axis: ClassVar[str] = "quality"
    origin: ClassVar[str] = "improved"
    template_stem: ClassVar[str] = "refine_improve"


@OPERATORS.register
@dataclass(frozen=True)
class Augment(Operator):
    """Sparse samples: one brand-new prompt near the sample, its k neighbours shown as hints."""

    name: ClassVar[str] = "augment"
    axis: ClassVar[str] = "diversity"
    origin: ClassVar[str] = "augmented"
    template_stem: ClassVar[str] = "refine_augment"

    def hints(self, template: Template, source: Sample, neighbours: list[Sample] | None) -> str:
        # With no stored neighbours (k = 0) the core prompt is its own hint.
        examples = neighbours or [source]
        hint = template.section("hint")
        return "\n".join(fill(hint, number=str(i), prompt=s.prompt)
                         for i, s in enumerate(examples, start=1))


@OPERATORS.register
@dataclass(frozen=True)
class Respond(Operator):
    """The second call: a comprehensive, accurate response to a new or rewritten prompt."""

    name: ClassVar[str] = "respond"
    axis: ClassVar[str] = "any"
    origin: ClassVar[str] = ""
    template_stem: ClassVar[str] = "response"

    def build_for(self, prompt: str) -> Prompted:
        return Prompted(user=fill(self.template.section("user"), prompt=prompt),
                        prefill="", marker="", labels=[])


# the operator per axis (selection.AXES), in the order a refinement run works through them
AXIS_OPERATOR = {"complexity": "simplify", "quality": "improve", "diversity": "augment"}


def operator_for(axis: str, variant: Variant = "compact") -> Operator:
    if axis not in AXIS_OPERATOR:
        raise ValueError(f"unknown axis {axis!r} (known: {', '.join(AXIS_OPERATOR)})")
    return OPERATORS.get(AXIS_OPERATOR[axis])(variant=variant)
