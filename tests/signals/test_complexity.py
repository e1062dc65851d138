"""The loss pass: prompt tokens masked, response-only LM head, formats, truncation, empty responses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from middo_core.sample import Sample
from middo_core.signals.encode import encode, encode_all, format_hash
from middo_core.signals.forward import PassOutput, _decoder, run_pass

QUESTIONS = [
    Sample(instruction="What is the capital of France?", output="The capital of France is Paris."),
    Sample(instruction="Add 2 and 3.", input="Show the result only.", output="5"),
    Sample(instruction="Name a colour.", output="Blue.", history=[("Hi", "Hello! How can I help?")]),
    Sample(instruction="Write a haiku about rain.", output="Soft rain on the roof\nwhispers to the sleeping town\nmorning comes washed clean"),
]


@pytest.fixture(scope="module")
def tiny(tiny_model):
    from middo_core.models.loader import load_model

    return load_model(tiny_model, "cpu")


def _pass(model, encoded, **kw) -> PassOutput:
    out = PassOutput()
    run_pass(model, encoded, on_chunk=out.extend, **kw)
    order = np.argsort(out.index)
    return PassOutput([out.index[i] for i in order], [out.loss[i] for i in order],
                      [out.n_response[i] for i in order],
                      [out.embedding[i] for i in order] if out.embedding else [])


def _hf_loss(model, enc, mask_prompt: bool) -> float:
    ids = torch.tensor([enc.ids])
    labels = ids.clone()
    if mask_prompt:
        labels[0, : enc.prompt_len] = -100
    with torch.inference_mode():
        return float(model(ids, labels=labels).loss)


@pytest.mark.parametrize("fmt", ["chat", "plain"])
def test_loss_is_response_only_and_matches_a_masked_reference(tiny, fmt):
    model, tok = tiny
    encoded = encode_all(QUESTIONS, tok, fmt, 1024)
    out = _pass(model, encoded)
    for enc, loss, n in zip(encoded, out.loss, out.n_response, strict=True):
        assert n == enc.response_len > 0
        assert loss == pytest.approx(_hf_loss(model, enc, mask_prompt=True), abs=2e-3)
        assert abs(loss - _hf_loss(model, enc, mask_prompt=False)) > 1e-3  # prompt tokens not counted


def test_prompt_changes_condition_the_response_but_only_response_tokens_count(tiny):
    model, tok = tiny
    a = Sample(instruction="Say hello.", output="Hello there, friend.")
    b = Sample(instruction="Say hello in a much longer and more elaborate way, please.", output=a.output)
    ea, eb = encode_all([a, b], tok, "chat", 1024)
    assert ea.response_len == eb.response_len and eb.prompt_len > ea.prompt_len
    la, lb = _pass(model, [ea, eb]).loss
    assert la != pytest.approx(lb, abs=1e-6)


def test_greedy_continuation_scores_lower_than_a_random_response(tiny):
    model, tok = tiny
    prompt = Sample(instruction="Tell me something about the sea.", output="x")
    enc = encode(prompt, tok, "chat", 1024)
    # a random model's favourite tokens are blank; suppress those so the answer is real text
    blank = [i for i in range(len(tok)) if not tok.decode([i]).strip()] + list(tok.all_special_ids)
    with torch.inference_mode():
        gen = model.generate(torch.tensor([enc.ids[: enc.prompt_len]]), max_new_tokens=12,
                             do_sample=False, pad_token_id=tok.pad_token_id, suppress_tokens=blank)
    greedy = tok.decode(gen[0, enc.prompt_len:], skip_special_tokens=True)
    assert greedy.strip()
    rng = np.random.default_rng(0)
    random_text = tok.decode(rng.integers(1000, 40000, size=12).tolist())
    samples = [prompt.model_copy(update={"output": greedy}),
               prompt.model_copy(update={"output": random_text})]
    own, rand = _pass(model, encode_all(samples, tok, "chat", 1024)).loss
    assert own < rand - 1.0


def test_truncation_keeps_the_response_start_and_is_flagged(tiny):
    _, tok = tiny
    long_answer = Sample(instruction="Count.", output=" ".join(str(i) for i in range(400)))
    long_prompt = Sample(instruction="word " * 400, output="Fine.")
    short = Sample(instruction="Hi", output="Hello")
    a, b, c = encode_all([long_answer, long_prompt, short], tok, "chat", 64)
    assert a.truncated and b.truncated and not c.truncated
    assert len(a.ids) == len(b.ids) == 64
    assert a.prompt_len == encode(long_answer, tok, "chat", 4096).prompt_len  # prompt kept whole
    assert b.response_len == encode(long_prompt, tok, "chat", 4096).response_len  # answer kept whole
    assert 0 <= b.span[0] < b.span[1] <= b.prompt_len


def test_empty_response_is_flagged_with_no_loss(tiny):
    model, tok = tiny
    enc = encode_all([Sample(instruction="Say nothing.", output="  "), QUESTIONS[0]], tok, "chat", 1024)
    assert enc[0].empty_response and not enc[1].empty_response
    out = _pass(model, enc, want_embedding=True)
    assert out.loss[0] is None and np.isfinite(out.loss[1])
    assert np.isfinite(out.embedding[0]).all()  # an empty response still has an embedding


def test_plain_and_chat_formats_differ(tiny):
    model, tok = tiny
    chat, plain = encode(QUESTIONS[2], tok, "chat", 1024), encode(QUESTIONS[2], tok, "plain", 1024)
    assert chat.ids != plain.ids
    assert "Human: Hi\nAssistant: Hello! How can I help?\nHuman: Name a colour." in tok.decode(plain.ids)
    assert tok.decode(plain.ids[plain.span[0]:plain.span[1]]).strip() == "Name a colour."
    assert format_hash(tok, "chat") != format_hash(tok, "plain")
    l_chat, l_plain = _pass(model, [chat, plain]).loss
    assert l_chat != pytest.approx(l_plain, abs=1e-6)


def test_embedding_from_the_loss_pass_equals_a_prompt_only_pass(tiny):
    model, tok = tiny
    encoded = encode_all(QUESTIONS, tok, "chat", 1024)
    out = _pass(model, encoded, want_embedding=True)
    for enc, emb in zip(encoded, out.embedding, strict=True):
        with torch.inference_mode():
            hidden = _decoder(model)(input_ids=torch.tensor([enc.ids[: enc.prompt_len]])).last_hidden_state
        ref = hidden[0, enc.span[0]:enc.span[1]].float().mean(0).numpy()
        np.testing.assert_allclose(emb, ref, rtol=0, atol=5e-3 * np.abs(ref).max())
        # the pooled tokens are the instruction and input, not the template or the response
        assert tok.decode(enc.ids[enc.span[0]:enc.span[1]]).strip() == QUESTIONS[encoded.index(enc)].prompt


def test_batching_does_not_change_results(tiny):
    model, tok = tiny
    encoded = encode_all(QUESTIONS * 3, tok, "chat", 1024)
    together = _pass(model, encoded, batch_tokens=100_000)
    alone = _pass(model, encoded, batch_tokens=1)
    np.testing.assert_allclose(together.loss, alone.loss, atol=2e-2)
