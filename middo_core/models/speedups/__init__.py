"""The CPU speed layer: faster bf16 inference on a CPU, behind one seam.

Each file here is one mechanism, and none of them reads the environment or decides when it
applies; this file does both:
- attention.py: attention as bf16 matrix products (transformers' attention name `middo_gemm`);
- layers.py: prepacked oneDNN linear weights, a leaner RMSNorm, SiLU in the gate product;
- sequence_packing.py: the loss pass's decoder run on sequences laid end to end, no padding;
- native.py and kernels.c: fused elementwise kernels, compiled for this machine on first use.

`Speedups.from_env()` reads the switches, in this one place; the loader calls `apply` on every
model it loads and hands the loss pass `fast_path(model)`. `settled()` makes the one timed choice
(the attention path) so that a driver can hand it to its workers. The fallback is always the model's own
transformers code: a GPU, another dtype, training, a failed build or a switch set to off.
What `apply` did to a model is kept here, by model, never on the model itself.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from middo_core.models.speedups import attention, layers, native, sequence_packing
from middo_core.models.speedups.layers import oneDNN_bf16_available

__all__ = ["FastPath", "Speedups", "applied_to", "apply", "fast_path", "oneDNN_bf16_available",
           "restore_stock"]


def _default_kernel_cache() -> Path:
    return Path.home() / ".cache" / "middo" / "kernels"


@dataclass(frozen=True)
class Speedups:
    """The layer's switches. `from_env` reads them from the environment; the defaults are on."""

    pack: bool = True  # MIDDO_CPU_PACK=0: none of the CPU paths below but attention
    # (prepacked weights, lean RMSNorm, fused MLP, packed sequences, native kernels)
    attention: str = "auto"  # MIDDO_ATTENTION: auto (timed once), gemm (always), sdpa (never)
    native: bool = True  # MIDDO_NATIVE=0: PyTorch's ops instead of the compiled kernels
    # where kernels are built: $MIDDO_KERNEL_CACHE, else $XDG_CACHE_HOME/middo/kernels
    kernel_cache: Path = field(default_factory=_default_kernel_cache)
    compiler: str = "cc"  # $CC

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Speedups:
        env = os.environ if environ is None else environ
        if env.get("MIDDO_KERNEL_CACHE"):
            cache = Path(env["MIDDO_KERNEL_CACHE"])
        elif env.get("XDG_CACHE_HOME"):
            cache = Path(env["XDG_CACHE_HOME"]) / "middo" / "kernels"
        else:
            cache = _default_kernel_cache()
        return cls(pack=env.get("MIDDO_CPU_PACK", "1") != "0",
                   attention=env.get("MIDDO_ATTENTION", "auto").lower(),
                   native=env.get("MIDDO_NATIVE", "1") != "0",
                   kernel_cache=cache, compiler=env.get("CC") or "cc")

    def settled(self) -> Speedups:
        """These settings with every choice made: `auto` attention becomes gemm or sdpa, timed
        here once per process. Other processes handed them (Ray workers) never time again, so
        a busy worker cannot pick the other path and round differently from its driver."""
        if self.attention != "auto":
            return self
        faster = attention.faster_than_sdpa_here(self.kernels())
        return replace(self, attention="gemm" if faster else "sdpa")

    def kernels(self) -> native.Kernels | None:
        """The native kernels these settings allow (built once per process), or None."""
        if not (self.pack and self.native):
            return None
        return native.load(self.kernel_cache, self.compiler)


@dataclass
class _Applied:
    """What `apply` decided for one model."""

    settings: Speedups
    kernels: native.Kernels | None
    llama_code: bool | None = None  # can the padding-free pass run its code? (checked once)
    stock: bool = False  # restore_stock was called: no padding-free pass


# keyed by the model, weakly: the entry goes with the model (and never holds it)
_applied: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def apply(model: Any, settings: Speedups | None = None) -> list[str]:
    """Switch a bf16 model on a CPU to what this CPU, model and `settings` (default: the
    environment's) allow; returns what was switched on (empty: nothing, e.g. on a GPU)."""
    import torch

    settings = Speedups.from_env() if settings is None else settings
    param = next(model.parameters())
    if param.device.type != "cpu" or param.dtype != torch.bfloat16:
        _applied.pop(model, None)
        return []
    kernels = settings.kernels()  # built now, at load, rather than in the first pass
    _applied[model] = _Applied(settings, kernels)
    applied = []
    if attention.use_gemm_attention(model, settings.attention, kernels):
        applied.append("bf16 matrix-product attention")
    if settings.pack:
        applied += layers.speed_up(model, kernels)
    if kernels is not None:
        applied.append("native kernels")
    return applied


def restore_stock(model: Any) -> None:
    """Transformers' own layers again, the packed copies freed, and no padding-free pass (the
    attention stays: `model.set_attn_implementation("sdpa")` changes it)."""
    layers.restore_stock(model)
    state = _applied.get(model)
    if state is not None:
        state.stock = True


def applied_to(model: Any) -> dict[str, int]:
    """How many layers run each of the faster paths, and whether native kernels are in use."""
    state = _applied.get(model)
    return {**layers.applied_to(model),
            "native kernels": int(state is not None and state.kernels is not None)}


def fast_path(model: Any) -> FastPath | None:
    """What the loss pass may use for a model `apply` saw (None: its own forward only)."""
    state = _applied.get(model)
    return None if state is None else FastPath(model, state)


class FastPath:
    """The loss pass's fast paths for one model: the padding-free decoder pass and the head's
    cross-entropy kernel. Made for each use (it holds the model only while in use)."""

    def __init__(self, model: Any, state: _Applied):
        self.model, self._state = model, state

    def packs(self) -> bool:
        """Can `hidden_states` run this model now (bf16 inference on a CPU, the matrix-product
        attention, transformers' Llama code)?"""
        import torch

        state, model = self._state, self.model
        if not state.settings.pack or state.stock or model.training:
            return False
        param = next(model.parameters())
        if param.device.type != "cpu" or param.dtype != torch.bfloat16:
            return False
        if getattr(model.config, "_attn_implementation", None) != attention.NAME:
            return False
        if state.llama_code is None:
            state.llama_code = sequence_packing.llama_code(model)
        return state.llama_code

    def hidden_states(self, sequences: list[list[int]]) -> Any:
        """The final-norm hidden states of `sequences` (longest first) laid end to end, a
        (total tokens x hidden) tensor. Only where `packs()`."""
        return sequence_packing.packed_hidden_states(self.model, sequences, self._state.kernels)

    def response_nll(self, logits: Any, targets: Any) -> Any:
        """float32 cross-entropy of each row of bf16 `logits` against its target, in one native
        sweep; None where the kernels are not built or cannot take these logits."""
        import torch

        kernels = self._state.kernels
        if kernels is None or logits.dtype != torch.bfloat16 or not logits.is_contiguous():
            return None
        return kernels.row_nll(logits, targets)
