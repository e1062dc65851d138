"""CPU bf16 inference with prepacked weights, lean RMSNorm and the fused MLP: stock transformers'
answers (bit for bit where the docs say so), and stock code wherever gradients or other dtypes
are involved."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from middo_core.models import speedups
from middo_core.models.speedups import Speedups, layers

pytestmark = pytest.mark.skipif(not speedups.oneDNN_bf16_available(),
                                reason="needs oneDNN with bf16")
LAYERS = Speedups(attention="sdpa")  # the layers' paths, with transformers' attention


def _llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=True)
    return LlamaForCausalLM(cfg).to(torch.bfloat16).eval()


def _qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(1)
    cfg = Qwen2Config(vocab_size=300, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return Qwen2ForCausalLM(cfg).to(torch.bfloat16).eval()


def _ids(seed: int = 0, shape=(3, 40)):
    return torch.randint(0, 300, shape, generator=torch.Generator().manual_seed(seed))


def _logits(model, ids):
    with torch.inference_mode():
        return model(ids).logits.float()


@pytest.mark.parametrize("make", [_llama, _qwen2], ids=["llama", "qwen2 (biased q/k/v)"])
def test_packed_layers_give_the_stock_values_bit_for_bit(make):
    model = make()
    stock = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    x = torch.randn(2, 7, 64).to(torch.bfloat16)
    applied = speedups.apply(model, LAYERS)
    assert "packed linear weights" in applied
    counts = speedups.applied_to(model)
    assert counts["packed linear"] == len(stock) == 2 * 7 + 1  # 7 per layer and the head
    with torch.inference_mode():
        for name, lin in stock.items():
            if lin.in_features == 64:
                assert torch.equal(lin(x), F.linear(x, lin.weight, lin.bias)), name


@pytest.mark.parametrize("make", [_llama, _qwen2], ids=["llama", "qwen2"])
def test_the_whole_model_agrees_with_stock_transformers(make):
    model = make()
    ids = _ids()
    stock = _logits(model, ids)
    assert speedups.apply(model, LAYERS)
    assert speedups.applied_to(model)["lean RMSNorm"] == 2 * 2 + 1
    assert speedups.applied_to(model)["fused MLP"] == 2
    fast = _logits(model, ids)
    # the fused SiLU and the RMSNorm's variance round differently: bf16 noise, nothing more
    assert (fast - stock).abs().max() < 0.1
    assert fast.argmax(-1).eq(stock.argmax(-1)).float().mean() > 0.95
    speedups.restore_stock(model)
    assert layers.applied_to(model) == {"packed linear": 0, "lean RMSNorm": 0, "fused MLP": 0}
    assert not any(layers.is_packed(m) for m in model.modules())  # the copies are freed
    assert torch.equal(_logits(model, ids), stock)


def test_training_runs_the_stock_code_and_a_changed_weight_is_packed_again():
    model = _llama()
    ids = _ids(shape=(2, 16))
    speedups.apply(model, LAYERS)
    model.train()
    out = model(ids, labels=ids)  # gradients on: every layer takes transformers' own path
    out.loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    lin = model.model.layers[0].self_attn.q_proj
    x = torch.randn(5, 64).to(torch.bfloat16)
    with torch.no_grad():
        lin.weight.add_(0.5)  # an optimizer step, in place
        assert torch.equal(lin(x), F.linear(x, lin.weight))  # not the stale packed copy
        lin.weight.data = lin.weight.data * 2  # a reload: new storage
        assert torch.equal(lin(x), F.linear(x, lin.weight))


def test_other_dtypes_and_other_norms_are_left_alone(monkeypatch):
    model = _llama().float()
    assert speedups.apply(model, LAYERS) == []
    from transformers import GemmaConfig, GemmaForCausalLM

    gemma = GemmaForCausalLM(GemmaConfig(
        vocab_size=300, hidden_size=64, intermediate_size=160, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16)).to(torch.bfloat16).eval()
    speedups.apply(gemma, LAYERS)
    counts = speedups.applied_to(gemma)
    assert counts["lean RMSNorm"] == 0  # Gemma's norm scales by (1 + weight): not the same code
    assert counts["fused MLP"] == 0  # and its MLP's activation is GELU
    assert counts["packed linear"] > 0
    monkeypatch.setenv("MIDDO_CPU_PACK", "0")  # all of the CPU paths but attention
    model = _llama()
    applied = speedups.apply(model, Speedups.from_env())
    assert not {"packed linear weights", "lean RMSNorm", "SiLU in the gate product",
                "native kernels"} & set(applied)
    assert speedups.applied_to(model) == {"packed linear": 0, "lean RMSNorm": 0, "fused MLP": 0,
                                          "native kernels": 0}


def test_loss_pass_on_a_loaded_model_matches_the_stock_model(tmp_path, monkeypatch):
    monkeypatch.delenv("MIDDO_CPU_PACK", raising=False)  # the loader's default: on
    from middo_core.models.loader import build_tiny_model, load_model
    from middo_core.sample import Sample
    from middo_core.signals.encode import encode_all
    from middo_core.signals.forward import PassOutput, run_pass

    path = build_tiny_model(tmp_path / "tiny")
    model, tok = load_model(str(path), "cpu")
    assert speedups.applied_to(model)["packed linear"] > 0
    samples = [Sample(instruction=f"Say {i} words", input="", output=" ".join(["word"] * (3 + i)))
               for i in range(6)]
    encoded = encode_all(samples, tok, "chat", 256)

    def losses():
        out = PassOutput()
        run_pass(model, encoded, on_chunk=out.extend)
        return dict(zip(out.index, out.loss, strict=True))

    fast = losses()
    model.save_pretrained(tmp_path / "saved")  # the packed copies are not part of the model's state
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "saved", dtype=torch.bfloat16)
    assert all(torch.equal(a, b) for a, b in zip(saved.state_dict().values(),
                                                 model.state_dict().values(), strict=True))
    speedups.restore_stock(model)
    stock = losses()
    assert fast.keys() == stock.keys()
    assert max(abs(fast[i] - stock[i]) for i in fast) < 0.02


def test_the_memory_check_counts_the_fused_qkv_copy_too(monkeypatch):
    model = _llama()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    plain = sum(m.weight.numel() * 2 for m in linears)
    qkv = sum(getattr(layer.self_attn, n).weight.numel() * 2 for layer in model.model.layers
              for n in ("q_proj", "k_proj", "v_proj"))
    assert layers.packed_bytes(model, linears) == plain + qkv
    # free memory for the plain copies but not for the fused one as well: nothing is packed
    share = layers.MEMORY_SHARE
    monkeypatch.setattr(layers, "available_bytes", lambda: int((plain + qkv / 2) / share))
    assert "packed linear weights" not in speedups.apply(model, LAYERS)
    monkeypatch.setattr(layers, "available_bytes", lambda: int((plain + qkv) / share) + 1)
    assert "packed linear weights" in speedups.apply(model, LAYERS)
