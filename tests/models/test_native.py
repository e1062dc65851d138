"""The compiled bf16 kernels: PyTorch's values (rounding where PyTorch rounds), built once per
machine and source, and PyTorch's own code wherever they cannot be built."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from middo_core.models.speedups import Speedups, native

needs_compiler = pytest.mark.skipif(shutil.which(os.environ.get("CC") or "cc") is None,
                                    reason="no C compiler here")


def _wanted():
    """The kernels where the environment puts them, with the compiler it names, asked for even
    where a switch in the environment turns them off."""
    return replace(Speedups.from_env(), pack=True, native=True).kernels()


@pytest.fixture(scope="module")
def k():
    """The kernels as built, without the check at load (a wrong kernel must fail here, not
    be skipped)."""
    settings = Speedups.from_env()
    path = native.build(settings.kernel_cache, settings.compiler)
    return native.Kernels(ctypes.CDLL(str(path)), path)


def _rand(*shape, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * scale).to(torch.bfloat16)


@pytest.fixture
def fresh_build(tmp_path, monkeypatch):
    """A cold kernel cache in tmp_path; the process's own kernels are loaded again after."""
    monkeypatch.setenv("MIDDO_KERNEL_CACHE", str(tmp_path / "kernels"))
    native.load.cache_clear()
    yield tmp_path / "kernels"
    monkeypatch.undo()
    native.load.cache_clear()


@needs_compiler
def test_causal_softmax_is_the_masked_softmax_and_masked_keys_are_exactly_zero(k):
    rep, n, start, width = 3, 96, 192, 288  # the third query block of a 288-position group
    scores = _rand(2, 3, n * rep, width, scale=4.0)
    bias = torch.full((n, width), float("-inf")).triu_(start + 1)  # position start+i: keys <= it
    want = torch.softmax(scores.float() + bias.repeat_interleave(rep, 0), dim=-1)
    got = k.causal_softmax_(scores, start, rep)
    assert got.data_ptr() == scores.data_ptr()  # in place
    assert (got.float() - want).abs().max() < 4e-3  # bf16's rounding of values below 1
    assert (got.float() == want.to(torch.bfloat16).float()).float().mean() > 0.99
    mask = bias.repeat_interleave(rep, 0).isinf().expand_as(got)
    assert (got[mask] == 0).all() and (got[~mask] > 0).any()
    with pytest.raises(ValueError, match="wider"):
        k.causal_softmax_(_rand(1, 1, 6, 4), 3, 3)
    with pytest.raises(ValueError, match="whole positions"):
        k.causal_softmax_(_rand(1, 1, 7, 40), 0, 3)


@needs_compiler
@pytest.mark.parametrize("per_batch", [True, False], ids=["a bias per sequence", "one bias"])
def test_masked_softmax_adds_the_bias_as_pytorch_does_then_takes_the_softmax(k, per_batch):
    b, kv, n, rep, width = 3, 2, 40, 3, 70
    scores = _rand(b, kv, n, rep, width, scale=4.0)
    lowest = torch.finfo(torch.bfloat16).min
    full = torch.zeros(b, 1, 50, width, dtype=torch.bfloat16)  # transformers' (B, 1, Sq, Sk)
    full[0, 0, :, 60:] = lowest  # padded keys
    full[:, 0, 17] = lowest  # a padding query that sees nothing: stays finite, as in PyTorch
    bias = (full if per_batch else full[:1])[:, 0, 10:10 + n]  # a query block: strided rows
    want = torch.softmax(scores + bias[:, None, :, None], dim=-1)  # bf16 add, then softmax
    got = k.masked_softmax_(scores, bias)
    assert torch.isfinite(got.float()).all()
    assert (got.float() - want.float()).abs().max() < 4e-3
    assert (got == want).float().mean() > 0.99
    seeing = torch.arange(n) != 7  # the rows that see some key attend to no padded one
    assert (got[0, :, seeing, :, 60:] == 0).all()
    with pytest.raises(ValueError, match="does not fit"):
        k.masked_softmax_(scores, bias[:, :5])


@needs_compiler
def test_cross_entropy_matches_float32_cross_entropy_on_a_real_vocabulary(k):
    logits, targets = _rand(40, 49152, scale=4.0), torch.randint(0, 49152, (40,))
    want = F.cross_entropy(logits.float(), targets, reduction="none")
    got = k.row_nll(logits, targets)
    assert got.dtype == torch.float32
    assert (got - want).abs().max() < 2e-5 * want.abs().max()


@needs_compiler
def test_rms_norm_rounds_where_transformers_llama_rms_norm_rounds(k):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    norm = LlamaRMSNorm(576, eps=1e-5).to(torch.bfloat16)
    with torch.no_grad():
        norm.weight.copy_(_rand(576, seed=1) + 1)
    x = _rand(1000, 576, scale=3.0)
    with torch.inference_mode():
        want, got = norm(x), k.rms_norm(x, norm.weight, 1e-5)
    same = (got == want).float().mean()
    assert same > 0.999  # the sum of squares is added up in another order: a rare last bit
    assert ((got.float() - want.float()).abs() <= want.float().abs() / 64).all()


@needs_compiler
def test_rotary_is_transformers_apply_rotary_pos_emb_bit_for_bit_on_strided_heads(k):
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    tokens, heads, d = 50, 15, 64
    qkv = _rand(tokens, heads, d)
    cos, sin = _rand(tokens, d, seed=2), _rand(tokens, d, seed=3)
    queries, keys = qkv[:, :9].clone(), qkv[:, 9:12].clone()
    want_q, want_k = apply_rotary_pos_emb(queries.transpose(0, 1)[None],
                                          keys.transpose(0, 1)[None], cos[None], sin[None])
    untouched = qkv[:, 12:].clone()
    k.rotary_(qkv[:, :12], cos, sin)  # q and k heads of a fused q|k|v row
    assert torch.equal(qkv[:, :9], want_q[0].transpose(0, 1))
    assert torch.equal(qkv[:, 9:12], want_k[0].transpose(0, 1))
    assert torch.equal(qkv[:, 12:], untouched)


@needs_compiler
def test_wrong_inputs_are_refused_not_misread(k):
    with pytest.raises(ValueError, match="bf16"):
        k.row_nll(torch.zeros(2, 8), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="strided"):
        k.rms_norm(_rand(8, 4).t(), _rand(8), 1e-5)
    with pytest.raises(ValueError, match="targets"):
        k.row_nll(_rand(3, 8), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        k.row_nll(_rand(2, 8), torch.tensor([3, 8]))  # never read past the row


@needs_compiler
def test_they_pass_their_check_at_load_and_are_used(k):
    assert native.self_check(k) == ""
    assert _wanted() is not None


@needs_compiler
def test_built_once_then_found_in_the_cache(fresh_build):
    fresh_build.mkdir(parents=True)
    dead, live = fresh_build / ".build-killed.so", fresh_build / ".build-running.so"
    dead.write_text("half a library")
    live.write_text("a build in progress")
    os.utime(dead, (time.time() - 7200, time.time() - 7200))
    assert _wanted() is not None
    assert not dead.exists() and live.exists()  # a killed build's file is swept, a live one kept
    live.unlink()
    built = list(fresh_build.glob("middo_kernels_*.so"))
    assert len(built) == 1 and not list(fresh_build.glob(".build-*"))
    stamp = built[0].stat().st_mtime_ns
    native.load.cache_clear()
    assert _wanted().path == built[0]
    assert built[0].stat().st_mtime_ns == stamp  # not compiled again


def test_without_a_compiler_the_pytorch_code_runs(fresh_build, monkeypatch, caplog):
    monkeypatch.setenv("CC", "no-such-compiler-here")
    assert _wanted() is None
    # the user is told why the pass is slower and what to do
    assert "no-such-compiler-here" in caplog.text and "build-essential" in caplog.text
    assert not fresh_build.exists() or not list(fresh_build.iterdir())
    # and a model still runs its loss pass, on PyTorch's ops
    from middo_core.models.speedups.attention import grouped_attention

    q, k, v = _rand(1, 6, 40, 64), _rand(1, 2, 40, 64, seed=1), _rand(1, 2, 40, 64, seed=2)
    out = grouped_attention(q, k, v, 0.125, kernels=None)
    assert torch.isfinite(out.float()).all()


def test_a_failing_compiler_leaves_nothing_half_written(fresh_build, monkeypatch, tmp_path):
    broken = tmp_path / "cc"
    # writes a partial file where it was told to, then fails, as a crashed build does
    broken.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo broken 1.0; exit 0; fi\n"
                      "while [ $# -gt 1 ]; do if [ \"$1\" = -o ]; then echo partial > \"$2\"; fi; "
                      "shift; done\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CC", str(broken))
    assert _wanted() is None
    assert list(fresh_build.iterdir()) == []  # no library, no temporary file


def test_the_environment_turns_them_off(monkeypatch):
    monkeypatch.setenv("MIDDO_NATIVE", "0")
    assert Speedups.from_env().kernels() is None
    monkeypatch.setenv("MIDDO_NATIVE", "1")
    monkeypatch.setenv("MIDDO_CPU_PACK", "0")
    assert Speedups.from_env().kernels() is None


@needs_compiler
def test_loading_them_leaves_the_process_floating_point_mode_alone():
    # a library built with -ffast-math would switch the whole process to flush denormals to zero
    code = ("import torch; from middo_core.models.speedups import Speedups; "
            "assert Speedups.from_env().kernels(); "
            "tiny = torch.tensor([1e-40]); print((tiny * 1.0).item() != 0.0)")
    env = {k: v for k, v in os.environ.items() if k not in ("MIDDO_NATIVE", "MIDDO_CPU_PACK")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True, env=env)
    assert out.stdout.strip() == "True"
