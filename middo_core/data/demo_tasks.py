"""Generators of the demo's task families; verifiable families carry their exact answer."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from middo_core.data import demo_tables as T


@dataclass
class Task:
    family: str
    instruction: str
    output: str
    input: str = ""
    answer: str | None = None  # the short exact answer, for verifiable families
    wrong_output: str | None = None  # the same response with a wrong answer


def _answered(family: str, instruction: str, reasoning: str, answer: str, wrong: str,
              wrong_reasoning: str | None = None, input: str = "") -> Task:
    return Task(family, instruction, f"{reasoning}\n\nAnswer: {answer}", input, answer,
                f"{wrong_reasoning or reasoning}\n\nAnswer: {wrong}")


def _off_by(rng: random.Random, value: int) -> int:
    wrong = value + rng.choice([-3, -2, -1, 1, 2, 5, 10])
    return wrong if wrong != value and wrong >= 0 else value + 1


def arithmetic(rng: random.Random) -> Task:
    name, item = rng.choice(T.NAMES), rng.choice(T.ITEMS)
    kind = rng.randrange(5)
    if kind == 0:
        a, b = rng.randint(3, 60), rng.randint(2, 40)
        q = f"{name} has {a} {item}s and gets {b} more. How many {item}s does {name} have now?"
        r, expr = a + b, f"{a} + {b}"
    elif kind == 1:
        a = rng.randint(20, 90)
        b = rng.randint(2, a - 1)
        q = f"{name} had {a} {item}s and gave away {b}. How many {item}s are left?"
        r, expr = a - b, f"{a} - {b}"
    elif kind == 2:
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        q = f"There are {a} boxes with {b} {item}s in each box. How many {item}s are there in total?"
        r, expr = a * b, f"{a} × {b}"
    elif kind == 3:
        b, r = rng.randint(2, 9), rng.randint(2, 15)
        a = b * r
        q = f"{name} shares {a} {item}s equally among {b} friends. How many {item}s does each friend get?"
        expr = f"{a} ÷ {b}"
    else:
        price, n = rng.randint(2, 9), rng.randint(2, 6)
        bill = 50 if price * n > 20 else 20
        r = bill - price * n
        q = (f"A {item} costs {price} dollars. {name} buys {n} of them and pays with a "
             f"{bill}-dollar bill. How much change does {name} get?")
        w = _off_by(rng, r)
        return _answered("arithmetic", q,
                         f"{n} {item}s cost {n} × {price} = {price * n} dollars, so the change is "
                         f"{bill} - {price * n} = {r} dollars.", str(r), str(w),
                         f"{n} {item}s cost {n} × {price} = {price * n} dollars, so the change is "
                         f"{bill} - {price * n} = {w} dollars.")
    w = _off_by(rng, r)
    return _answered("arithmetic", q, f"We compute {expr} = {r}.", str(r), str(w),
                     f"We compute {expr} = {w}.")


def conversion(rng: random.Random) -> Task:
    if rng.random() < 0.15:
        c = 5 * rng.randint(-6, 20)
        f = c * 9 // 5 + 32
        w = f + rng.choice([-4, -2, 2, 4, 10])
        q = rng.choice(["Convert {c} degrees Celsius to Fahrenheit.",
                        "What is {c} °C in degrees Fahrenheit?"]).format(c=c)
        return _answered("conversion", q, f"F = C × 9/5 + 32 = {c} × 9/5 + 32 = {f}.", f"{f} °F",
                         f"{w} °F", f"F = C × 9/5 + 32 = {c} × 9/5 + 32 = {w}.")
    src, dst, factor = rng.choice(T.CONVERSIONS)
    v = rng.randint(2, 48)
    r = v * factor
    w = r + factor * rng.choice([-1, 1, 2])
    q = rng.choice(["Convert {v} {src} to {dst}.", "How many {dst} are in {v} {src}?",
                    "Express {v} {src} in {dst}."]).format(v=v, src=src, dst=dst)
    unit = src[:-1] if src.endswith("s") else src
    return _answered("conversion", q,
                     f"One {unit} is {factor} {dst}, so {v} {src} is {v} × {factor} = {r} {dst}.",
                     f"{r} {dst}", f"{w} {dst}",
                     f"One {unit} is {factor} {dst}, so {v} {src} is {v} × {factor} = {w} {dst}.")


def string_task(rng: random.Random) -> Task:
    kind = rng.randrange(5)
    word = rng.choice(T.WORDS)
    if kind == 0:
        rev = word[::-1]
        wrong = rev[1:] + rev[0]
        q = rng.choice(['Reverse the word "{w}".', 'Write the word "{w}" backwards.']).format(w=word)
        return _answered("string", q, f'Reading "{word}" from the last letter to the first gives '
                         f'"{rev}".', rev, wrong, f'Reading "{word}" from the last letter to the '
                         f'first gives "{wrong}".')
    if kind == 1:
        n = len(word)
        q = rng.choice(['How many letters are in the word "{w}"?',
                        'Count the letters in "{w}".']).format(w=word)
        return _answered("string", q, f'"{word}" is spelled {"-".join(word)}, which is {n} letters.',
                         str(n), str(n + 1), f'"{word}" is spelled {"-".join(word)}, which is '
                         f'{n + 1} letters.')
    if kind == 2:
        letter = rng.choice(sorted(set(word)))
        n = word.count(letter)
        q = f'How many times does the letter "{letter}" appear in the word "{word}"?'
        return _answered("string", q, f'Spelling out "{word}": {"-".join(word)}. The letter '
                         f'"{letter}" appears {n} time{"s" if n > 1 else ""}.', str(n), str(n + 1))
    if kind == 3:
        words = rng.sample(T.WORDS, rng.randint(3, 5))
        ordered = ", ".join(sorted(words))
        wrong = ", ".join(sorted(words, reverse=True))
        return _answered("string", "Sort the following words in alphabetical order.",
                         "In alphabetical order:", ordered, wrong, input=", ".join(words))
    numbers = rng.sample(range(1, 100), rng.randint(4, 6))
    ordered = ", ".join(map(str, sorted(numbers)))
    wrong = ", ".join(map(str, sorted(numbers)[1:] + sorted(numbers)[:1]))
    return _answered("string", "Sort these numbers from smallest to largest.",
                     "From smallest to largest:", ordered, wrong, input=", ".join(map(str, numbers)))


def fact(rng: random.Random) -> Task:
    if rng.random() < 0.65:
        country = rng.choice(sorted(T.CAPITALS))
        city = T.CAPITALS[country]
        wrong = rng.choice([c for c in sorted(T.CAPITALS.values()) if c != city])
        q = rng.choice(["What is the capital of {c}?", "Which city is the capital of {c}?",
                        "Name the capital city of {c}."]).format(c=country)
        return _answered("fact", q, f"The capital of {country} is {city}.", city, wrong,
                         f"The capital of {country} is {wrong}.")
    element = rng.choice(sorted(T.ELEMENTS))
    symbol = T.ELEMENTS[element]
    wrong = rng.choice([s for s in sorted(T.ELEMENTS.values()) if s != symbol])
    q = rng.choice(["What is the chemical symbol for {e}?",
                    "Which symbol stands for {e} in the periodic table?"]).format(e=element)
    return _answered("fact", q, f"The chemical symbol for {element} is {symbol}.", symbol, wrong,
                     f"The chemical symbol for {element} is {wrong}.")


def code(rng: random.Random) -> Task:
    if rng.random() < 0.4:  # parameterised tasks give many distinct prompts
        k = rng.randint(2, 12)
        if rng.random() < 0.5:
            name, what = f"multiply_by_{k}", f"multiplies every number in a list by {k}"
            body = f"def {name}(numbers):\n    return [x * {k} for x in numbers]"
        else:
            name, what = f"divisible_by_{k}", f"returns True if an integer is divisible by {k}"
            body = f"def {name}(n):\n    return n % {k} == 0"
    else:
        name, what, body = rng.choice(T.CODE_TASKS)
    q = rng.choice(["Write a Python function `{n}` that {w}.", "Implement `{n}` in Python: it {w}.",
                    "Create a Python function called `{n}` that {w}."]).format(n=name, w=what)
    out = f"Here is a Python function that {what}:\n\n```python\n{body}\n```"
    return Task("code", q, out)


def definition(rng: random.Random) -> Task:
    term = rng.choice(sorted(T.DEFINITIONS))
    meaning = T.DEFINITIONS[term]
    q = rng.choice(["What is {t}?", "Define {t}.", "Explain {t} in one sentence.",
                    "Give a short definition of {t}."]).format(t=term)
    subject = term[0].upper() + term[1:]
    return Task("definition", q, f"{subject} is {meaning}.")


def rewrite(rng: random.Random) -> Task:
    kind = rng.randrange(3)
    if kind == 0:
        casual, formal = rng.choice(T.FORMAL)
        q = rng.choice(["Rewrite the following sentence in a formal tone.",
                        "Make this sentence more formal."])
        return Task("rewrite", q, formal, casual)
    if kind == 1:
        active, passive = rng.choice(T.PASSIVE)
        q = rng.choice(["Rewrite the sentence in the passive voice.",
                        "Change this sentence from active to passive voice."])
        return Task("rewrite", q, passive, active)
    sentence = rng.choice([s for pair in T.FORMAL + T.PASSIVE for s in pair])
    return Task("rewrite", "Convert the following sentence to uppercase letters.",
                sentence.upper(), sentence, answer=sentence.upper())


# Verifiable families weigh more: they feed the exact-match evaluation.
FAMILIES: list[tuple[Callable[[random.Random], Task], int]] = [
    (arithmetic, 5), (conversion, 3), (string_task, 4), (fact, 3), (code, 3), (definition, 2),
    (rewrite, 2),
]
