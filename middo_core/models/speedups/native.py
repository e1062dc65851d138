"""Fused bf16 kernels for CPU inference (the loss pass, the judge), compiled on first use.

PyTorch runs the causal softmax, the head's cross-entropy, RMSNorm and the rotary embedding as
several passes over memory each, with float32 copies in between; `kernels.c` does each in one
sweep and rounds where PyTorch rounds. The C file is compiled for this machine with the system's
C compiler into a cache folder, once per source, compiler and CPU, and loaded with ctypes; the
kernels share PyTorch's OpenMP threads.

Where there is no compiler, the build fails, or the built kernels disagree with PyTorch on a
check at load, `load` returns None and every caller keeps its PyTorch code: the kernels are a
speed-up, never a requirement. Whether to use them, the compiler and the folder are the
settings' (`Speedups` in this package's `__init__`); nothing here reads the environment.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from middo_core.files import remove_stale

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels.c")
BUILD_PREFIX = ".build-"  # a build in progress, renamed to its library's name when done
STALE_BUILD_S = 3600.0
FLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math",
         "-shared", "-fPIC"]
_I64, _PTR, _F32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float
SIGNATURES = {
    "causal_softmax_bf16": [_PTR, _I64, _I64, _I64, _I64, _I64],
    "masked_softmax_bf16": [_PTR, _I64, _I64, _I64, _I64, _I64, _PTR, _I64, _I64],
    "row_nll_bf16": [_PTR, _I64, _I64, _PTR, _PTR],
    "rms_norm_bf16": [_PTR, _I64, _I64, _PTR, _F32, _PTR],
    "rotary_bf16": [_PTR, _I64, _I64, _I64, _I64, _PTR, _PTR],
}


class Kernels:
    """The loaded library; each method takes contiguous CPU tensors (checked) and returns the
    result tensor."""

    def __init__(self, lib: ctypes.CDLL, path: Path):
        self.lib, self.path = lib, path
        for name, args in SIGNATURES.items():
            getattr(lib, name).argtypes = args
            getattr(lib, name).restype = None

    def causal_softmax_(self, scores: Any, start: int, rep: int) -> Any:
        """Softmax of (..., positions x rep, width) bf16 scores in place, row (i, r) over keys
        0..start+i only (the rest set to 0)."""
        _check(scores)
        rows, width = scores.shape[-2], scores.shape[-1]
        if rows % rep:
            raise ValueError(f"{rows} score rows are not whole positions of {rep} heads")
        if start + rows // rep > width:
            raise ValueError(f"causal block {start}+{rows // rep} is wider than its {width} keys")
        self.lib.causal_softmax_bf16(scores.data_ptr(), scores.numel() // (rows * width), rows,
                                     width, start, rep)
        return scores

    def masked_softmax_(self, scores: Any, bias: Any) -> Any:
        """Softmax of (batches, kv, positions, rep, width) bf16 scores in place after adding
        `bias` (batches or 1, positions, width), the additive mask of each position's keys
        (strided rows allowed), broadcast over the kv and rep heads."""
        _check(scores)
        b, kv, positions, rep, width = scores.shape
        if (bias.dtype != scores.dtype or bias.device.type != "cpu" or bias.dim() != 3
                or bias.shape[0] not in (1, b) or bias.shape[1:] != (positions, width)
                or bias.stride(2) != 1):
            raise ValueError(f"bias {tuple(bias.shape)} does not fit scores {tuple(scores.shape)}")
        self.lib.masked_softmax_bf16(scores.data_ptr(), b, kv, positions, rep, width,
                                     bias.data_ptr(), bias.stride(0) if bias.shape[0] > 1 else 0,
                                     bias.stride(1))
        return scores

    def row_nll(self, logits: Any, targets: Any) -> Any:
        """float32 cross-entropy of each (rows x vocabulary) bf16 logit row against its target."""
        import torch

        _check(logits)
        targets = targets.to(torch.int64).contiguous()
        if targets.numel() != logits.shape[0]:
            raise ValueError(f"{targets.numel()} targets for {logits.shape[0]} rows")
        if targets.numel() and (targets.min() < 0 or targets.max() >= logits.shape[1]):
            raise ValueError(f"targets outside the vocabulary of {logits.shape[1]}")
        out = torch.empty(logits.shape[0], dtype=torch.float32)
        self.lib.row_nll_bf16(logits.data_ptr(), logits.shape[0], logits.shape[1],
                              targets.data_ptr(), out.data_ptr())
        return out

    def rms_norm(self, x: Any, weight: Any, eps: float) -> Any:
        import torch

        _check(x)
        _check(weight)
        out = torch.empty_like(x)
        self.lib.rms_norm_bf16(x.data_ptr(), x.numel() // x.shape[-1], x.shape[-1],
                               weight.data_ptr(), eps, out.data_ptr())
        return out

    def rotary_(self, x: Any, cos: Any, sin: Any) -> Any:
        """x: (tokens, heads, head size) bf16 whose heads are contiguous (the token stride may be
        larger); cos, sin: (tokens, head size). Rotated in place."""
        _check(cos)
        _check(sin)
        tokens, heads, dim = x.shape
        if x.dtype != cos.dtype or x.device.type != "cpu" or x.stride(2) != 1 or x.stride(1) != dim:
            raise ValueError("rotary_ takes bf16 CPU (tokens, heads, dim) with contiguous heads")
        if cos.shape != (tokens, dim) or sin.shape != (tokens, dim):
            raise ValueError(f"cos and sin must be ({tokens}, {dim})")
        self.lib.rotary_bf16(x.data_ptr(), tokens, x.stride(0), heads, dim, cos.data_ptr(),
                             sin.data_ptr())
        return x


def _check(t: Any) -> None:
    import torch

    if t.dtype != torch.bfloat16 or t.device.type != "cpu" or not t.is_contiguous():
        raise ValueError(f"the native kernels take contiguous bf16 CPU tensors, not {t.dtype} "
                         f"{t.device.type} {'contiguous' if t.is_contiguous() else 'strided'}")


@functools.cache
def load(folder: Path, compiler: str) -> Kernels | None:
    """The kernels built with `compiler` (a name or path) in `folder`, or None (no compiler, a
    failed build or check); built and checked once per process."""
    try:
        path = build(folder, compiler)
        found = Kernels(ctypes.CDLL(str(path)), path)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        log.warning("native kernels unavailable (%s): the CPU passes run PyTorch's ops, ~12%% "
                    "slower; install a C compiler (Debian: build-essential), or set "
                    "MIDDO_NATIVE=0 to skip them", exc)
        return None
    problem = self_check(found)
    if problem:
        log.warning("native kernels disagree with PyTorch (%s): PyTorch's code is used", problem)
        return None
    return found


def _compiler(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"no C compiler ({name!r} not found)")
    return found


def _cpu_id() -> str:
    """What -march=native compiles for: a library built on one CPU is never loaded on another
    that shares the cache folder (a cluster's home directory)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))][:2]
        return "\n".join(lines)
    except OSError:
        return platform.processor() + platform.machine()


def build(folder: Path, compiler: str = "cc") -> Path:
    """The library for this source, compiler and CPU in `folder`: built once, then found there."""
    compiler = _compiler(compiler)
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    key = hashlib.sha256("\0".join([SOURCE.read_text(), " ".join(FLAGS), version, _cpu_id()])
                         .encode()).hexdigest()[:16]
    target = folder / f"middo_kernels_{key}.so"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    # files of builds killed midway (a build takes about a second: one an hour old is dead)
    remove_stale(folder.glob(f"{BUILD_PREFIX}*"), STALE_BUILD_S)
    # built under a temporary name and renamed: concurrent builders never load a partial file
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=BUILD_PREFIX, suffix=".so")
    os.close(fd)
    try:
        done = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", tmp, "-lm"],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {done.stderr.strip()[-500:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def self_check(found: Kernels) -> str:
    """Compare each kernel with the PyTorch code it replaces on small random inputs; returns
    what disagrees (empty: all agree)."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(torch.bfloat16)

    problems = []
    with torch.inference_mode():
        scores = rand(2, 3, 4 * 3, 37, scale=4.0)
        bias = torch.full((4, 37), float("-inf")).triu_(30)  # position i: keys up to 29 + i
        want = torch.softmax(scores.float() + bias[:, None].expand(4, 3, 37).reshape(12, 37), -1)
        got = found.causal_softmax_(scores.clone(), 29, 3).float()
        if (got - want).abs().max() > 8e-3:
            problems.append("causal softmax")
        bias = torch.zeros(2, 4, 37, dtype=torch.bfloat16)
        bias[0, :, 30:] = bias[1, 2] = torch.finfo(torch.bfloat16).min
        want = torch.softmax((scores.view(2, 3, 4, 3, 37) + bias[:, None, :, None]).float(), -1)
        got = found.masked_softmax_(scores.clone().view(2, 3, 4, 3, 37), bias).float()
        if (got - want).abs().max() > 8e-3:
            problems.append("masked softmax")
        logits, targets = rand(5, 1000, scale=3.0), torch.randint(0, 1000, (5,), generator=g)
        want = F.cross_entropy(logits.float(), targets, reduction="none")
        if (found.row_nll(logits, targets) - want).abs().max() > 1e-4:
            problems.append("cross-entropy")
        x, w = rand(7, 64, scale=2.0), rand(64)
        xf = x.float()
        want = w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(torch.bfloat16)
        # one bf16 step may differ (the sum of squares is added up in another order)
        got = found.rms_norm(x, w, 1e-5).float()
        if not ((got - want.float()).abs() <= want.float().abs() / 64 + 1e-3).all():
            problems.append("RMSNorm")
        x, cos, sin = rand(6, 2, 8), rand(6, 8), rand(6, 8)
        rotated = torch.cat((-x[..., 4:], x[..., :4]), dim=-1)
        want = x * cos[:, None] + rotated * sin[:, None]
        if not torch.equal(found.rotary_(x.clone(), cos, sin), want):
            problems.append("rotary")
    return ", ".join(problems)
