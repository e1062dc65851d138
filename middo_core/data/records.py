"""One record of Alpaca, ShareGPT or OpenAI-messages data to a Sample and back, with validation.

A conversation keeps every turn: the turns before the last become `Sample.history`
([user, assistant] pairs), the last user turn the instruction, the last assistant turn the output.
"""

from __future__ import annotations

from typing import Any

from middo_core.sample import Sample

SCHEMAS = ("alpaca", "sharegpt", "openai")
MAX_SAMPLE_CHARS = 1_000_000  # ~250k tokens: beyond any fine-tuning context, so surely junk

# ShareGPT speaker names seen in the wild, mapped to chat roles.
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "system": "system"}
OPENAI_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}

Problems = list[tuple[str | None, str]]  # (field, message)


def detect_schema(record: Any) -> str:
    """Which schema a record follows, judged by its keys (nulls ignored: columnar files
    give every record every column)."""
    if isinstance(record, dict):
        if record.get("conversations") is not None:
            return "sharegpt"
        if record.get("messages") is not None:
            return "openai"
    return "alpaca"


def _text_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, got {_type_name(value)}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # Invalid bytes reach us as lone surrogates (surrogateescape), as do bad \u escapes.
        return "is not valid UTF-8 text"
    return None


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", type(None): "null", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _optional_text(record: dict, key: str, problems: Problems, field: str | None = None) -> str:
    value = record.get(key)
    if value is None:
        return ""
    problem = _text_problem(value)
    if problem:
        problems.append((field or key, problem))
        return ""
    return value


def _alpaca(record: dict, problems: Problems) -> Sample | None:
    instruction = record.get("instruction")
    if instruction is None:
        problems.append(("instruction", "missing"))
    elif (p := _text_problem(instruction)) is not None:
        problems.append(("instruction", p))
    elif not instruction.strip():
        problems.append(("instruction", "is empty"))
    output = record.get("output")
    if output is None:
        problems.append(("output", "missing"))
    elif (p := _text_problem(output)) is not None:
        problems.append(("output", p))
    inp = _optional_text(record, "input", problems)
    system = _optional_text(record, "system", problems)
    history = _history(record.get("history"), problems)
    if problems:
        return None
    return Sample(instruction=instruction, input=inp, output=output, system=system,
                  history=history)


def _history(value: Any, problems: Problems) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(("history", f"must be a list of [user, assistant] pairs, got {_type_name(value)}"))
        return []
    pairs: list[tuple[str, str]] = []
    for i, pair in enumerate(value):
        field = f"history[{i}]"
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            problems.append((field, "must be a [user, assistant] pair"))
            continue
        for j, text in enumerate(pair):
            if (p := _text_problem(text)) is not None:
                problems.append((f"{field}[{j}]", p))
        pairs.append((pair[0], pair[1]))
    return pairs


def _conversation(record: dict, key: str, role_key: str, text_key: str, roles: dict[str, str],
                  problems: Problems) -> Sample | None:
    turns = record.get(key)
    if not isinstance(turns, list):
        problems.append((key, f"must be a list of turns, got {_type_name(turns)}"))
        return None
    if not turns:
        problems.append((key, "is empty"))
        return None
    system = _optional_text(record, "system", problems)
    chat: list[tuple[str, str, int]] = []  # (role, text, turn index) after the system turn
    for i, turn in enumerate(turns):
        field = f"{key}[{i}]"
        if not isinstance(turn, dict):
            problems.append((field, f"must be an object, got {_type_name(turn)}"))
            continue
        speaker = turn.get(role_key)
        role = roles.get(speaker) if isinstance(speaker, str) else None
        if role is None:
            problems.append((f"{field}.{role_key}", f"unknown speaker {speaker!r} "
                             f"(expected one of {', '.join(sorted(roles))})"))
            break  # the turns after it cannot be checked for alternation
        text = turn.get(text_key)
        if (p := _text_problem(text)) is not None:
            problems.append((f"{field}.{text_key}", "missing" if text is None else p))
            text = ""
        if role == "system":
            if i != 0:
                problems.append((f"{field}.{role_key}", "a system turn may only come first"))
            elif system:
                problems.append((f"{field}.{role_key}", "two system prompts (field 'system' and a system turn)"))
            system = text
            continue
        expected = "user" if len(chat) % 2 == 0 else "assistant"
        if role != expected:
            problems.append((f"{field}.{role_key}", f"turns must alternate user/assistant: "
                             f"expected a {expected} turn here, got {speaker!r}"))
            break  # every later turn would be out of step too
        chat.append((role, text, i))
    if problems:
        return None
    if not chat:
        problems.append((key, "has no user turn"))
        return None
    if len(chat) % 2:
        problems.append((key, "must end with an assistant turn"))
        return None
    if not chat[-2][1].strip():
        problems.append((f"{key}[{chat[-2][2]}].{text_key}", "the last user turn is empty"))
        return None
    history = [(chat[i][1], chat[i + 1][1]) for i in range(0, len(chat) - 2, 2)]
    return Sample(instruction=chat[-2][1], output=chat[-1][1], system=system, history=history)


def record_to_sample(record: Any, schema: str | None = None,
                     max_chars: int = MAX_SAMPLE_CHARS) -> tuple[Sample | None, str, Problems]:
    """(sample or None, schema used, problems). `schema` None: detected from the record's keys."""
    if not isinstance(record, dict):
        return None, schema or "alpaca", [(None, f"a record must be a JSON object, got {_type_name(record)}")]
    schema = schema or detect_schema(record)
    problems: Problems = []
    if schema == "sharegpt":
        sample = _conversation(record, "conversations", "from", "value", SHAREGPT_ROLES, problems)
    elif schema == "openai":
        sample = _conversation(record, "messages", "role", "content", OPENAI_ROLES, problems)
    else:
        sample = _alpaca(record, problems)
    if sample is not None:
        size = sample_chars(sample)
        if size > max_chars:
            problems.append((None, f"sample has {size:,} characters, over the limit of {max_chars:,}"))
            sample = None
    return sample, schema, problems


def sample_chars(sample: Sample) -> int:
    return (len(sample.instruction) + len(sample.input) + len(sample.output) + len(sample.system)
            + sum(len(u) + len(a) for u, a in sample.history))


# ---- export shapes -------------------------------------------------------------------------

def to_alpaca(sample: Sample, full: bool = False) -> dict[str, Any]:
    """Alpaca record; `full` always writes system and history (LLaMA-Factory needs the columns)."""
    rec: dict[str, Any] = {"instruction": sample.instruction, "input": sample.input,
                           "output": sample.output}
    if full or sample.system:
        rec["system"] = sample.system
    if full or sample.history:
        rec["history"] = [list(t) for t in sample.history]
    return rec


def to_sharegpt(sample: Sample) -> dict[str, Any]:
    names = {"system": "system", "user": "human", "assistant": "gpt"}
    return {"conversations": [{"from": names[m["role"]], "value": m["content"]}
                              for m in sample.messages()]}


def to_openai(sample: Sample) -> dict[str, Any]:
    return {"messages": sample.messages()}
