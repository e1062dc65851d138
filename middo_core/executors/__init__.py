"""Where the heavy work runs: in this process (`local`) or on a Ray cluster (`ray`).

    from middo_core.executors import make_executor
    with make_executor("ray", address="auto", actors=8, gpus_per_actor=1) as ex:
        diagnose(ws, 0, executor=ex)

Both run any work object (middo_core.signals.passes has the loss pass and a signal's own compute)
the same way, knowing no signal by name; Ray is imported only
when a Ray executor starts working.
"""

from middo_core.executors.base import EXECUTORS, Executor, make_executor

__all__ = ["EXECUTORS", "Executor", "make_executor"]
