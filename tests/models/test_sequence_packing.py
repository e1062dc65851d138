"""The padding-free decoder pass: the model's own answers for every sequence, whatever the lengths
beside it; the model's own forward wherever the code is not Llama's or it is not bf16 CPU
inference."""

from __future__ import annotations

import pytest
import torch

from middo_core.models import speedups
from middo_core.models.speedups import Speedups, layers
from middo_core.models.speedups import sequence_packing as sp

pytestmark = pytest.mark.skipif(not speedups.oneDNN_bf16_available(),
                                reason="needs oneDNN with bf16")
GEMM = Speedups(attention="gemm")  # on a CPU without bf16 dot products too


@pytest.fixture(autouse=True)
def _gemm_attention(monkeypatch):
    monkeypatch.setenv("MIDDO_ATTENTION", "gemm")  # for models the loader loads


def _llama(seed: int = 0, settings: Speedups = GEMM, **extra):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, initializer_range=0.2, **extra)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    assert "bf16 matrix-product attention" in speedups.apply(model, settings)
    return model


def _packs(model) -> bool:
    fast = speedups.fast_path(model)
    return fast is not None and fast.packs()


def _sequences(lengths, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 300, (n,), generator=gen).tolist() for n in lengths]


# equal lengths (attended in place), lengths within 10% (one padded group), and far apart
LENGTHS = [300, 300, 290, 280, 200, 64, 64, 9, 1]


@pytest.mark.parametrize("native", [True, False], ids=["native kernels", "pytorch ops"])
@pytest.mark.parametrize("bias", [False, True], ids=["llama", "llama with q/k/v biases"])
def test_every_sequence_gets_the_hidden_states_it_gets_alone(bias, native):
    settings = Speedups(attention="gemm", native=native)
    model = _llama(settings=settings, attention_bias=bias)
    assert _packs(model)
    assert speedups.applied_to(model)["native kernels"] == int(
        native and settings.kernels() is not None)
    groups = sp.attention_groups(LENGTHS)
    assert [(g.first, g.last) for g in groups] == [(0, 4), (4, 5), (5, 7), (7, 8), (8, 9)]
    sequences = _sequences(LENGTHS)
    with torch.inference_mode():
        packed = speedups.fast_path(model).hidden_states(sequences)
        assert packed.shape == (sum(LENGTHS), 64)
        row = 0
        for seq in sequences:
            # the stock model, one sequence at a time: SDPA attention, transformers' layers
            speedups.restore_stock(model)
            model.set_attn_implementation("sdpa")
            alone = model.model(input_ids=torch.tensor([seq])).last_hidden_state[0].float()
            got = packed[row:row + len(seq)].float()
            row += len(seq)
            # bf16 noise is 1-2% of the mean value here (sharp attention: initializer_range=0.2);
            # a rotary embedding turned the wrong way is 100%
            assert (got - alone).abs().max() < 0.1 * alone.abs().max(), len(seq)
            assert (got - alone).abs().mean() < 0.04 * alone.abs().mean(), len(seq)
            speedups.apply(model, settings)


@pytest.mark.parametrize("prepacked", [True, False], ids=["prepacked", "no memory for copies"])
def test_it_matches_the_padded_pass_of_the_same_fast_paths_closely(prepacked, monkeypatch):
    if not prepacked:  # too little free memory for the packed copies: stock linear layers
        monkeypatch.setattr(layers, "available_bytes", lambda: 0)
    model = _llama(1)
    assert _packs(model)
    sequences = _sequences([120, 117, 111, 40], seed=3)
    with torch.inference_mode():
        packed = speedups.fast_path(model).hidden_states(sequences)
        ids = torch.zeros((4, 120), dtype=torch.long)
        for b, seq in enumerate(sequences):
            ids[b, :len(seq)] = torch.tensor(seq)
        padded = model.model(input_ids=ids, use_cache=False).last_hidden_state
    # one product on a fused copy of the q, k, v weights only where the layers are prepacked
    assert layers.is_packed(model.model.layers[0].self_attn, slot="qkv") == prepacked
    row = 0
    for b, seq in enumerate(sequences):
        same = packed[row:row + len(seq)] == padded[b, :len(seq)]
        row += len(seq)
        assert same.float().mean() > 0.99  # the same operations: equal up to a rare last bit


def test_a_changed_projection_weight_is_used_at_once():
    model = _llama(2)
    seq = _sequences([50])
    fast = speedups.fast_path(model)
    with torch.inference_mode():
        before = fast.hidden_states(seq).clone()
        model.model.layers[0].self_attn.k_proj.weight.mul_(2)
        after = fast.hidden_states(seq)
        stock = model.model(input_ids=torch.tensor(seq)).last_hidden_state[0]
    assert not torch.equal(before, after)
    assert (after.float() - stock.float()).abs().mean() < 0.04 * stock.float().abs().mean()


def test_other_models_and_settings_run_their_own_forward(monkeypatch):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=300, hidden_size=64, intermediate_size=160,
                                        num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=2)).to(torch.bfloat16).eval()
    speedups.apply(qwen, GEMM)
    assert not _packs(qwen)  # its model code differs from Llama's (sliding windows)
    model = _llama()
    assert _packs(model)
    speedups.restore_stock(model)
    assert not _packs(model)  # the stock path is the stock model
    speedups.apply(model, GEMM)
    assert _packs(model)
    model.train()
    assert not _packs(model)
    model.eval()
    monkeypatch.setenv("MIDDO_CPU_PACK", "0")
    speedups.apply(model, Speedups.from_env())
    assert not _packs(model)
    speedups.apply(model, GEMM)
    model.set_attn_implementation("sdpa")
    assert not _packs(model)
    assert not _packs(_llama().float())


def test_models_behind_transformers_shared_decorators_are_told_apart():
    # transformers wraps many forwards in one kwarg-deprecation decorator whose own code is the
    # same whatever it wraps: OLMo2 (norms after attention and MLP, q/k norms) and Qwen3 (q/k
    # norms) must not pass for Llama, or the packed pass would drop their norms
    from transformers import Olmo2Config, Olmo2ForCausalLM
    from transformers.models.llama.modeling_llama import LlamaAttention
    from transformers.models.qwen3.modeling_qwen3 import Qwen3Attention

    assert not layers.same_code(Qwen3Attention.forward, LlamaAttention.forward)
    torch.manual_seed(0)
    olmo = Olmo2ForCausalLM(Olmo2Config(
        vocab_size=300, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2)).to(torch.bfloat16).eval()
    assert "bf16 matrix-product attention" in speedups.apply(olmo, GEMM)
    assert not _packs(olmo)
    assert speedups.applied_to(olmo)["lean RMSNorm"] == 0  # its norm's code is not Llama's either


def test_sequences_must_come_longest_first():
    with pytest.raises(ValueError, match="longest first"):
        speedups.fast_path(_llama()).hidden_states(_sequences([5, 9]))


def test_the_loss_pass_plans_unpadded_batches_and_agrees_with_the_stock_pass(tmp_path, monkeypatch):
    monkeypatch.delenv("MIDDO_CPU_PACK", raising=False)  # the loader's default: on
    from middo_core.models.loader import build_tiny_model, load_model
    from middo_core.sample import Sample
    from middo_core.signals.encode import encode_all
    from middo_core.signals.forward import PassOutput, plan_batches, run_pass

    model, tok = load_model(str(build_tiny_model(tmp_path / "tiny")), "cpu")
    assert _packs(model)
    samples = [Sample(instruction=f"Say {i} words " + "and more " * (i % 7), input="",
                      output=" ".join(["word"] * (3 + 5 * i))) for i in range(12)]
    encoded = encode_all(samples, tok, "chat", 256)
    lengths = sorted((len(e.ids) for e in encoded), reverse=True)
    assert lengths[0] > 2 * lengths[-1]
    batches = plan_batches(encoded, batch_tokens=4096, packed=True)
    assert len(batches) == 1  # lengths far apart share a batch: nothing is padded
    assert len(plan_batches(encoded, batch_tokens=4096)) > 1

    def run():
        out = PassOutput()
        stats = run_pass(model, encoded, want_embedding=True, on_chunk=out.extend)
        order = sorted(range(len(out.index)), key=out.index.__getitem__)
        return stats, [out.loss[i] for i in order], [out.embedding[i] for i in order]

    stats, loss, emb = run()
    assert stats.batches == 1 and stats.padded_tokens == stats.tokens == sum(lengths)
    speedups.restore_stock(model)
    model.set_attn_implementation("sdpa")
    stock_stats, stock_loss, stock_emb = run()
    assert stock_stats.padded_tokens > stock_stats.tokens
    assert max(abs(a - b) for a, b in zip(loss, stock_loss, strict=True)) < 0.02
    assert max(float(abs(a - b).max()) for a, b in zip(emb, stock_emb, strict=True)) < 0.1
