"""The six self-judge prompts of a sample, built from the templates in prompts/judge_*.txt.

Two layouts. Both start with the same intro (what is rated, the 0-10 scale, rating first). The shared layout
(default) then puts the sample first and the metric's question after it, so the six prompts of a
sample form a tree: head + intro + instruction is common to all six, + response to the three
response metrics, and only short questions differ; the scorer computes each common part once.
The faithful layout is the paper's order (the whole rubric first, then the sample): six prompts
that share only the head and intro, fed in full. Prompts are token-id sequences glued from separately tokenized pieces, so a prefix's ids
are exactly the first ids of every prompt that contains it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from middo_core.prompts import Template, load_template, render, text_hash
from middo_core.sample import Sample

TARGETS = ("instruction", "response")
DIMENSIONS = ("clarity", "completeness", "factuality")
METRICS: tuple[tuple[str, str], ...] = tuple((t, d) for t in TARGETS for d in DIMENSIONS)
METRIC_COLUMNS: tuple[str, ...] = tuple(f"{t}_{d}" for t, d in METRICS)
TEMPLATE_NAMES = ("judge_sample", "judge_instruction", "judge_response", "judge_dimensions")
SEP = "\n\n"
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def parse_rating(text: str) -> float | None:
    """The first number in a reply, clipped to 0..10; None when the reply holds no number."""
    match = _NUMBER.search(text)
    if match is None:
        return None
    return min(max(float(match.group()), 0.0), 10.0)


@dataclass(frozen=True)
class JudgeTemplates:
    """The four judge template files, read once."""

    sample: Template
    instruction: Template
    response: Template
    dimensions: Template

    @classmethod
    def load(cls) -> JudgeTemplates:
        return cls(*(load_template(name) for name in TEMPLATE_NAMES))

    def hash(self, *extra: str) -> str:
        """One hash over every judge template (and the layout/mode words given)."""
        parts = [t.hash for t in (self.sample, self.instruction, self.response, self.dimensions)]
        return text_hash("|".join([*parts, *extra]))

    def question(self, target: str, dimension: str) -> str:
        rubric = self.instruction if target == "instruction" else self.response
        return render(
            rubric.section("question"),
            dimension=dimension,
            definition=self.dimensions.section(dimension),
        )

    def answer_prefix(self) -> str:
        """The start of the judge's reply (the score comes right after it)."""
        return self.instruction.section("answer")

    def body(self, sample: Sample, target: str, dimension: str, faithful: bool) -> str:
        """The user message of one judge prompt, as text (endpoints, inspection)."""
        parts = [render(self.sample.section("instruction"), instruction=sample.prompt)]
        if target == "response":
            parts.append(render(self.sample.section("response"), response=sample.output))
        question = self.question(target, dimension)
        parts = [question, *parts] if faithful else [*parts, question]
        return SEP.join([self.sample.section("intro"), *parts])


def chat_wrap(tokenizer, prompt_format: str) -> tuple[str, str]:
    """(head, tail) around the user message: the model's chat template, or the plain format."""
    if prompt_format == "chat" and getattr(tokenizer, "chat_template", None):
        marker = "\x00MIDDO\x00"
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": marker}], tokenize=False, add_generation_prompt=True
        )
        head, tail = text.split(marker)
        return head, tail
    return "Human: ", "\nAssistant: "


@dataclass(frozen=True)
class ScoreTokens:
    """How the score is written after the answer prefix, in this tokenizer's ids."""

    answer_ids: list[int]  # tail + answer prefix (+ a lone space token where digits need it)
    digit_ids: list[int]  # the token of "0".."9" right after answer_ids
    ten_id: int | None  # "10" as one token, when the tokenizer has it
    ten_two_step: bool  # "10" is "1" then "0": P(10) = P("1") * P(a digit follows "1")


def score_tokens(tokenizer, tail: str, answer: str) -> ScoreTokens:
    """Find single-token digits after `tail + answer`, with or without a space before them."""
    for sep in (" ", ""):
        seqs = [_ids(tokenizer, f"{tail}{answer}{sep}{d}") for d in range(10)]
        n = len(_common_prefix(seqs))
        if n and all(len(s) == n + 1 for s in seqs) and len({s[-1] for s in seqs}) == 10:
            base = seqs[0][:n]
            ten = _ids(tokenizer, f"{tail}{answer}{sep}10")
            digits = [s[-1] for s in seqs]
            ten_id = ten[-1] if len(ten) == n + 1 and ten[:n] == base else None
            two = ten_id is None and ten == [*base, digits[1], digits[0]]
            return ScoreTokens(base, digits, ten_id, two)
    raise ValueError(
        "this tokenizer writes digits as multi-character tokens after the answer prefix; "
        "logprobs scoring needs single-token digits: use mode='generate'"
    )


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _common_prefix(seqs: list[list[int]]) -> list[int]:
    first = seqs[0]
    n = 0
    while n < len(first) and all(len(s) > n and s[n] == first[n] for s in seqs):
        n += 1
    return first[:n]


@dataclass
class PromptTree:
    """One sample's six prompts: trunk (+ branch for responses) + one question each."""

    trunk: list[int]  # head + intro + instruction section
    branch: list[int]  # response section
    questions: list[list[int]] = field(default_factory=list)  # six, in METRICS order

    def prompt(self, metric: int) -> list[int]:
        target = METRICS[metric][0]
        middle = self.branch if target == "response" else []
        return [*self.trunk, *middle, *self.questions[metric]]


class PromptBuilder:
    """Token ids of the judge prompts for one tokenizer and layout."""

    def __init__(self, templates: JudgeTemplates, tokenizer, prompt_format: str, max_len: int):
        self.t = templates
        self.tok = tokenizer
        self.max_len = max_len
        head, tail = chat_wrap(tokenizer, prompt_format)
        self.head = _ids(tokenizer, head) + _ids(tokenizer, templates.sample.section("intro") + SEP)
        bos = getattr(tokenizer, "bos_token_id", None)
        adds_bos = bos is not None and tokenizer("x")["input_ids"][:1] == [bos]
        if adds_bos and self.head[:1] != [bos]:
            self.head = [bos, *self.head]
        self.score = score_tokens(tokenizer, tail, templates.answer_prefix())
        questions = [templates.question(t, d) for t, d in METRICS]
        # Shared layout: the question follows the sample; faithful: it opens the message.
        self.shared_questions = [_ids(tokenizer, SEP + q) + self.score.answer_ids for q in questions]
        self.faithful_questions = [_ids(tokenizer, q + SEP) for q in questions]
        self.instr_parts = self._split(templates.sample.section("instruction"), "instruction")
        self.resp_parts = self._split(templates.sample.section("response"), "response")

    def _split(self, section: str, key: str) -> tuple[list[int], list[int]]:
        before, _, after = section.partition("{" + key + "}")
        return _ids(self.tok, before), _ids(self.tok, after)

    def _sections(self, sample: Sample) -> tuple[list[int], list[int]]:
        """Instruction and response sections, their texts cut so the longest prompt fits."""
        instr = _ids(self.tok, sample.prompt)
        resp = _ids(self.tok, sample.output)
        sep = _ids(self.tok, SEP)
        questions = max(map(len, self.shared_questions + self.faithful_questions))
        fixed = (
            len(self.head) + sum(map(len, self.instr_parts)) + sum(map(len, self.resp_parts))
            + len(sep) + questions + len(self.score.answer_ids) + 2  # + the "10" step
        )
        room = max(self.max_len - fixed, 2)
        if len(instr) + len(resp) > room:  # keep at least half of the room for each part
            keep_instr = max(room - len(resp), room // 2)
            instr = instr[:keep_instr]
            resp = resp[: room - len(instr)]
        instr_ids = [*self.instr_parts[0], *instr, *self.instr_parts[1]]
        resp_ids = [*sep, *self.resp_parts[0], *resp, *self.resp_parts[1]]
        return instr_ids, resp_ids

    def tree(self, sample: Sample) -> PromptTree:
        instr, resp = self._sections(sample)
        return PromptTree([*self.head, *instr], resp, list(self.shared_questions))

    def faithful(self, sample: Sample) -> list[list[int]]:
        """The six prompts in the paper's order: question, then the sample."""
        instr, resp = self._sections(sample)
        prompts = []
        for i, (target, _) in enumerate(METRICS):
            middle = resp if target == "response" else []
            prompts.append(
                [*self.head, *self.faithful_questions[i], *instr, *middle, *self.score.answer_ids]
            )
        return prompts
