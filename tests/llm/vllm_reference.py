"""The project's own transformers passes, as the yardstick the vLLM tests hold vLLM's numbers to.

`reference` runs the shared loss pass and the transformers judge (both modes) on the packaged
SmolLM2 in bf16 (the project's default on CPU) and in float32. The distance between the two is
the size of the error bf16 arithmetic makes: "within bf16 noise" means a vLLM number is no
farther from the float32 one than twice that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from middo_core.sample import Sample


def _has_avx512() -> bool:
    """vLLM's CPU kernels are built for AVX-512; on a CPU with AVX2 only (measured on a 2-core AMD
    EPYC) the same engine reads the packaged model ~13x slower per sample (8 demo samples' losses
    in 51 s, where 96 took 35 s with AVX-512), so the tests read fewer samples there."""
    try:
        return " avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return True


MODEL = "smollm2-135m"
FULL = _has_avx512()
JUDGED = 5 if FULL else 1  # samples the judge tests rate in each mode (6 prompts each)
LOSSES = 96 if FULL else 24  # samples the loss tests read (about 15 flagged at m = 1 of 96)
MAX_LEN = 512


def demo_samples(n: int = LOSSES) -> list[Sample]:
    """The first n of the demo's training samples (planted defects among them)."""
    from middo_core.data.demo import build_demo

    return [s for s, _ in build_demo()["train"]][:n]


def reference(samples: list[Sample], judged: int, max_len: int,
              modes: tuple[str, ...] = ("logprobs", "generate")) -> dict[str, dict[str, np.ndarray]]:
    """{dtype: {"loss": per sample, mode: (judged, 6) ratings}} for bfloat16 and float32."""
    from middo_core.models.loader import load_model
    from middo_core.signals.encode import encode_all
    from middo_core.signals.forward import run_pass
    from middo_core.signals.quality import QualitySignal

    out: dict[str, dict[str, np.ndarray]] = {}
    for dtype in ("bfloat16", "float32"):
        model, tokenizer = load_model(MODEL, device="cpu", dtype=dtype)
        encoded = encode_all(samples, tokenizer, "chat", max_len)
        loss: dict[int, float] = {}
        run_pass(model, encoded,
                 on_chunk=lambda c, loss=loss: loss.update(zip(c.index, c.loss, strict=True)))
        out[dtype] = {"loss": np.array([loss[i] for i in range(len(samples))])}
        for mode in modes:
            signal = QualitySignal(mode=mode, max_len=max_len, prompt_format="chat", temperature=0.0)
            frame = signal.compute(samples[:judged], model, tokenizer)
            out[dtype][mode] = frame.drop(columns="quality").to_numpy()
    return out


def within_bf16_noise(got: np.ndarray, ref: dict[str, dict[str, np.ndarray]],
                      key: str) -> tuple[float, float]:
    """(mean |got - float32|, mean |project bf16 - float32|) for one output, over the first
    len(got) samples of the reference."""
    exact, ours = ref["float32"][key][:len(got)], ref["bfloat16"][key][:len(got)]
    return float(np.abs(got - exact).mean()), float(np.abs(ours - exact).mean())


def flags(loss: np.ndarray, m: float = 1.0) -> set[int]:
    """The samples a complexity threshold tau = mu + m*sigma flags on this loss."""
    tau = loss.mean() + m * loss.std()
    return set(np.flatnonzero(loss > tau).tolist())
