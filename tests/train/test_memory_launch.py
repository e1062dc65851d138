"""Refusing runs that cannot fit, and the multi-GPU launch command."""

from __future__ import annotations

import json
import sys

import pytest

from middo_core.config import TrainConfig
from middo_core.train.launch import ZERO2_CONFIG, launch_command, write_deepspeed_config
from middo_core.train.memory import InsufficientMemory, ModelShape, check_memory, estimate
from middo_core.train.presets import resolve_plan

LLAMA_7B = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=4096,
                intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096)


@pytest.fixture
def llama_7b_config(tmp_path):
    folder = tmp_path / "llama-7b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA_7B))
    return str(folder)


def test_full_fine_tuning_of_a_7b_model_is_refused_with_advice(llama_7b_config):
    plan = resolve_plan(TrainConfig(preset="paper-7b"))
    with pytest.raises(InsufficientMemory) as err:
        check_memory(plan, llama_7b_config, "cpu")
    msg = str(err.value)
    assert "preset paper-7b" in msg and "6.74B parameters" in msg
    assert "use --method lora or more GPUs" in msg
    need = float(msg.split("needs ~")[1].split(" GB")[0])
    assert 100 < need < 200  # 16 bytes per parameter plus activations


def test_lora_and_zero2_need_far_less_than_full_fine_tuning():
    shape = ModelShape(params=6_740_000_000, hidden=4096, layers=32, vocab=32000)
    full = sum(estimate(resolve_plan(TrainConfig(preset="paper-7b")), shape).values())
    lora = sum(estimate(resolve_plan(TrainConfig(preset="paper-7b"), {"method": "lora"}), shape).values())
    zero2 = sum(estimate(resolve_plan(TrainConfig(preset="paper-7b")), shape, 8, zero2=True).values())
    assert lora < full / 4 and zero2 < full / 3


def test_small_model_on_this_machine_fits(tiny_model):
    est = check_memory(resolve_plan(TrainConfig()), tiny_model, "cpu")
    assert est is not None and est.fits and "CPU RAM" in est.describe()


def test_launch_command_single_process_and_torchrun(tmp_path):
    single = launch_command(tmp_path, 2, 1)
    assert single == [sys.executable, "-m", "middo_core.train.entry", "--workspace", str(tmp_path),
                      "--iteration", "2"]
    ds = write_deepspeed_config(tmp_path / "ckpt")
    assert json.loads(ds.read_text())["zero_optimization"]["stage"] == ZERO2_CONFIG["zero_optimization"]["stage"] == 2
    multi = launch_command(tmp_path, 1, 8, deepspeed_config=ds, run_id="train-abc")
    assert multi[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=8"]
    assert multi[5:7] == ["-m", "middo_core.train.entry"]
    assert multi[multi.index("--deepspeed") + 1] == str(ds)
    assert multi[multi.index("--run-id") + 1] == "train-abc"
    acc = launch_command(tmp_path, 1, 4, launcher="accelerate")
    assert "accelerate.commands.launch" in acc and "--num_processes=4" in acc
    with pytest.raises(ValueError, match="unknown launcher"):
        launch_command(tmp_path, 1, 2, launcher="slurm")


def test_entry_point_parses_the_launch_arguments(small_workspace):
    """The single-process command trains for real (the same entry torchrun starts per GPU)."""
    import subprocess

    ws = small_workspace(train_overrides={"epochs": 0.25})
    result_file = ws.root / "result.json"
    cmd = launch_command(ws.root, 0, 1, extra=["--result-file", str(result_file)])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(result_file.read_text())
    assert result["steps"] == 3 and result["checkpoint"].endswith("iter_0")
