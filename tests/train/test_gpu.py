"""The GPU paths: single-GPU training and, with two or more GPUs, the torchrun launch."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_training_on_one_gpu_lowers_the_loss(small_workspace):
    from middo_core.train import train

    ws = small_workspace(train_overrides={"num_gpus": 1})
    result = train(ws, 0)
    assert result.losses[-1][1] < result.losses[0][1] - 1.0
    assert result.memory and "GPU" in result.memory


@needs_cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two or more GPUs")
def test_training_on_all_gpus_through_torchrun(small_workspace):
    from middo_core.train import train

    ws = small_workspace()
    events = []
    result = train(ws, 0, progress=events.append)  # num_gpus 0: every visible GPU
    assert result.steps > 0 and result.checkpoint.endswith("iter_0")
    assert any(getattr(e, "loss", None) is not None for e in events)  # relayed from rank 0


@needs_cuda
def test_lora_on_gpu_writes_a_merged_plain_checkpoint(small_workspace):
    from middo_core.models.loader import load_model
    from middo_core.train import train

    ws = small_workspace(train_overrides={"num_gpus": 1, "method": "lora"})
    result = train(ws, 0)
    model, _ = load_model(result.checkpoint, device="cuda")
    assert not any("lora" in name for name, _ in model.named_parameters())
