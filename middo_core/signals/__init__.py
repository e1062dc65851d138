"""The three Middo signals (complexity, diversity, quality) and the shared forward pass.

Import submodules directly (`from middo_core.signals.complexity import ComplexitySignal`); this
package stays light so the CLI and the app start fast.
"""

from middo_core.signals.base import SIGNAL_NAMES, SIGNALS, Signal, cache_key

__all__ = ["SIGNALS", "SIGNAL_NAMES", "Signal", "cache_key"]
