"""The CPU speed layer's seam: its switches read in one place, entered only through the loader,
and a model that never went through it runs its own code."""

from __future__ import annotations

import ast
from pathlib import Path

import torch

from middo_core.models import speedups
from middo_core.models.speedups import Speedups

REPO = Path(__file__).resolve().parents[2]


def test_the_switches_come_from_the_environment_in_one_place(tmp_path):
    assert Speedups.from_env({}) == Speedups()
    off = Speedups.from_env({"MIDDO_CPU_PACK": "0", "MIDDO_NATIVE": "0", "MIDDO_ATTENTION": "SDPA",
                             "MIDDO_KERNEL_CACHE": str(tmp_path), "CC": "clang"})
    assert off == Speedups(pack=False, attention="sdpa", native=False, kernel_cache=tmp_path,
                           compiler="clang")
    assert off.kernels() is None and Speedups(native=False).kernels() is None
    xdg = Speedups.from_env({"XDG_CACHE_HOME": str(tmp_path)})
    assert xdg.kernel_cache == tmp_path / "middo" / "kernels"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return names


def test_only_the_loader_enters_the_layer_and_no_environment_switch_is_read_elsewhere():
    package = REPO / "middo_core" / "models" / "speedups"
    entering, reading = [], []
    for path in sorted((REPO / "middo_core").rglob("*.py")) + sorted((REPO / "app").rglob("*.py")):
        if package in path.parents:
            continue
        if any(name.startswith("middo_core.models.speedups") for name in _imports(path)):
            entering.append(path.relative_to(REPO).as_posix())
        text = path.read_text(encoding="utf-8")
        if any(s in text for s in ("MIDDO_CPU_PACK", "MIDDO_NATIVE", "MIDDO_ATTENTION",
                                   "MIDDO_KERNEL_CACHE")):
            reading.append(path.relative_to(REPO).as_posix())
    assert entering == ["middo_core/models/loader.py"]
    assert reading == []
    for path in package.glob("*.py"):
        if path.name != "__init__.py":
            assert "os.environ" not in path.read_text(encoding="utf-8"), path.name


def test_a_model_the_loader_did_not_load_runs_its_own_code():
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=300, hidden_size=64, intermediate_size=160, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2)).to(torch.bfloat16).eval()
    assert speedups.fast_path(model) is None
    assert speedups.applied_to(model) == {"packed linear": 0, "lean RMSNorm": 0, "fused MLP": 0,
                                          "native kernels": 0}
    # nothing of the layer's is kept on the model: its state is the stock model's
    before = set(vars(model))
    speedups.apply(model, Speedups(attention="gemm"))
    assert speedups.fast_path(model) is not None
    assert not {k for k in set(vars(model)) - before if k.startswith("_middo")}
    assert not any(k.startswith("_middo") for m in model.modules() for k in vars(m))


def test_the_attention_path_is_settled_once_and_a_worker_follows_its_driver(tiny_model,
                                                                             monkeypatch):
    from middo_core.models import loader

    monkeypatch.delenv("MIDDO_ATTENTION", raising=False)
    monkeypatch.setattr(loader, "_followed", None)  # this process is no worker after the test
    settled = loader.settled_speedups()
    assert settled.attention in ("gemm", "sdpa") and loader.settled_speedups() == settled
    assert Speedups(attention="sdpa").settled() == Speedups(attention="sdpa")
    # a worker whose own switches (or timing, under load) would choose the other path
    other = "sdpa" if settled.attention == "gemm" else "gemm"
    monkeypatch.setenv("MIDDO_ATTENTION", other)
    loader.follow_speedups(settled)
    model, _ = loader.load_model(tiny_model, "cpu", dtype="bfloat16")
    assert (model.config._attn_implementation == "middo_gemm") == (settled.attention == "gemm")
    assert loader.settled_speedups() == settled  # and hands on the same choice


def test_dtype_auto_is_bf16_only_where_the_cpu_does_bf16_arithmetic(tiny_model, monkeypatch):
    from middo_core.models import loader

    # this machine's own answer: the probe of oneDNN's bf16 kernels decides
    native = speedups.oneDNN_bf16_available()
    model, _ = loader.load_model(tiny_model, "cpu")
    assert model.dtype == (torch.bfloat16 if native else torch.float32)
    # the other kind of CPU, as the probe would report it there
    monkeypatch.setattr(speedups, "oneDNN_bf16_available", lambda: not native)
    other, _ = loader.load_model(tiny_model, "cpu")
    assert other.dtype == (torch.float32 if native else torch.bfloat16)
    # an explicit dtype is kept whatever the CPU
    assert loader.load_model(tiny_model, "cpu", dtype="float32")[0].dtype == torch.float32
    assert loader.load_model(tiny_model, "cpu", dtype="bf16")[0].dtype == torch.bfloat16
