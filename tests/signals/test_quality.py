"""The quality signal on a real tiny model: ratings, layouts, KV reuse, generate parsing, hashes."""

from __future__ import annotations

import shutil

import pytest

from middo_core.sample import Sample
from middo_core.signals.judge_prompts import (
    METRIC_COLUMNS,
    METRICS,
    JudgeTemplates,
    PromptBuilder,
    parse_rating,
)
from middo_core.signals.quality import QualitySignal

SAMPLES = [
    Sample(instruction="Name three primary colors.", output="Red, blue and yellow."),
    Sample(instruction="Translate 'good morning' to French.", input="", output="Bonjour."),
    Sample(
        instruction="Summarize the text.",
        input="The cat sat on the mat all afternoon while the rain fell outside.",
        output="A cat stayed on a mat during a rainy afternoon, which is a longer answer than needed.",
    ),
]


@pytest.fixture(scope="module")
def judge(tiny_model):
    """The tiny model in float32 (exact comparisons) and its tokenizer."""
    from middo_core.models.loader import load_model

    return load_model(tiny_model, device="cpu", dtype="float32")


def biased(judge, *tokens: str, strength: float = 60.0):
    """A copy of the tiny model whose LM head strongly prefers the given tokens (a real model)."""
    import copy

    import torch

    model, tok = judge
    model = copy.deepcopy(model)
    old = model.get_output_embeddings()
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.zero_()
        for t in tokens:
            head.bias[tok.convert_tokens_to_ids(t)] = strength
    model.set_output_embeddings(head)
    return model, tok


def test_ratings_are_0_to_10_and_quality_is_the_documented_average(judge):
    model, tok = judge
    signal = QualitySignal()
    frame = signal.compute(SAMPLES, model, tok)
    assert list(frame.columns) == [*METRIC_COLUMNS, "quality"]
    assert ((frame >= 0) & (frame <= 10)).all().all()
    for _, row in frame.iterrows():
        dims = [(row[f"instruction_{d}"] + row[f"response_{d}"]) / 2 for d in ("clarity", "completeness", "factuality")]
        assert row["quality"] == pytest.approx(sum(dims) / 3)
    assert signal.report.samples == 3 and signal.report.prompts == 18
    assert frame.attrs["report"]["tokens_fed"] == signal.report.tokens_fed > 0


def test_results_are_indexed_by_sample_id_whatever_the_order(judge):
    model, tok = judge
    forward = QualitySignal(batch_size=2).compute(SAMPLES, model, tok)
    backward = QualitySignal(batch_size=2).compute([*reversed(SAMPLES), SAMPLES[0]], model, tok)
    assert list(forward.index) == [s.id for s in SAMPLES]
    assert len(backward) == 3  # a duplicate sample is judged once
    import pandas as pd

    pd.testing.assert_frame_equal(forward, backward.loc[forward.index], atol=1e-4, check_exact=False)


def test_batches_take_samples_of_similar_length_and_ratings_do_not_depend_on_it(judge):
    from middo_core.signals.judge_backends import TransformersJudge

    model, tok = judge
    short = [Sample(instruction=f"Say {w}.", output=f"{w}.") for w in ("yes", "no")]
    long = [Sample(instruction=f"Describe {w} in detail.", output=" ".join([w] * 60))
            for w in ("rain", "snow")]
    signal = QualitySignal(batch_size=2)
    interleaved = TransformersJudge().rate(signal, [long[0], short[0], long[1], short[1]], model,
                                           tok, None)
    grouped = TransformersJudge().rate(signal, [*short, *long], model, tok, None)
    assert interleaved.tokens_fed == grouped.tokens_fed
    # the two long samples share a batch, so the short ones are not padded to their length
    # (in input order, each batch would pad a short sample by ~60 response tokens)
    assert interleaved.positions_fed == grouped.positions_fed
    assert interleaved.positions_fed < interleaved.tokens_fed + 4 * 6 * 4
    by_id = dict(zip([s.id for s in (long[0], short[0], long[1], short[1])], interleaved.ratings,
                     strict=True))
    for sample, ratings in zip([*short, *long], grouped.ratings, strict=True):
        assert by_id[sample.id] == pytest.approx(ratings, abs=1e-4)


def test_shared_layout_feeds_fewer_tokens_than_the_faithful_one(judge):
    model, tok = judge
    shared, faithful = QualitySignal(), QualitySignal(faithful=True)
    a = shared.compute(SAMPLES, model, tok)
    b = faithful.compute(SAMPLES, model, tok)
    assert list(a.columns) == list(b.columns) and list(a.index) == list(b.index)
    assert ((b >= 0) & (b <= 10)).all().all()
    assert shared.report.layout == "shared" and faithful.report.layout == "faithful"
    assert shared.report.tokens_fed < 0.7 * faithful.report.tokens_fed
    assert shared.template_hash() != faithful.template_hash()  # different prompts, different cache


def test_kv_reuse_gives_the_logits_of_a_plain_forward_pass(judge):
    import torch

    from middo_core.signals.judge_transformers import Rows

    model, tok = judge
    builder = PromptBuilder(JudgeTemplates.load(), tok, "chat", 1024)
    trees = [builder.tree(s) for s in SAMPLES]  # different lengths: padding inside the cache
    rows = Rows(model)
    rows.extend([t.trunk for t in trees], tok.pad_token_id)
    fan = [i for i in range(len(trees)) for _ in range(3)]
    instr = rows.select(fan)
    got_i = instr.extend([q for t in trees for q in t.questions[:3]], tok.pad_token_id)
    rows.extend([t.branch for t in trees], tok.pad_token_id)
    resp = rows.select(fan)
    got_r = resp.extend([q for t in trees for q in t.questions[3:]], tok.pad_token_id)
    with torch.no_grad():
        for i, tree in enumerate(trees):
            for m in range(6):
                full = model(torch.tensor([tree.prompt(m)]), logits_to_keep=1).logits[0, -1]
                got = (got_i if m < 3 else got_r)[3 * i + m % 3]
                assert torch.allclose(got, full, atol=1e-4), (i, METRICS[m])


def test_the_common_head_is_fed_once_and_gives_the_same_logits(judge):
    import torch

    from middo_core.signals.judge_transformers import Rows

    model, tok = judge
    builder = PromptBuilder(JudgeTemplates.load(), tok, "chat", 1024)
    trees = [builder.tree(s) for s in SAMPLES]
    cut = len(builder.head)
    assert all(t.trunk[:cut] == builder.head for t in trees)
    head = Rows(model)
    head.extend([builder.head], tok.pad_token_id)
    rows = head.select([0] * len(trees))
    got = rows.extend([t.trunk[cut:] for t in trees], tok.pad_token_id)
    with torch.no_grad():
        for i, tree in enumerate(trees):
            full = model(torch.tensor([tree.trunk]), logits_to_keep=1).logits[0, -1]
            assert torch.allclose(got[i], full, atol=1e-4)
    # the scorer's count: the head once, then per sample its own tokens and the six questions
    signal = QualitySignal()
    signal.compute(SAMPLES, model, tok)
    per_sample = sum(len(t.trunk) - cut + len(t.branch) + sum(map(len, t.questions)) for t in trees)
    two_step = 6 * len(trees) if builder.score.ten_two_step else 0
    assert signal.report.tokens_fed == cut + per_sample + two_step


def test_tree_prompts_are_the_faithful_prompts_reordered():
    from middo_core.models.loader import SMOLLM2_ALIAS, load_tokenizer

    tok = load_tokenizer(SMOLLM2_ALIAS)
    builder = PromptBuilder(JudgeTemplates.load(), tok, "chat", 1024)
    tree = builder.tree(SAMPLES[2])
    text = tok.decode(tree.prompt(3))  # response clarity
    assert text.index("A cat stayed") < text.index("Rate only the assistant response")
    faithful = tok.decode(builder.faithful(SAMPLES[2])[3])
    assert faithful.index("Rate only the assistant response") < faithful.index("A cat stayed")
    assert "[Assistant response]" not in tok.decode(tree.prompt(0))  # instruction judged alone
    assert text.endswith("Rating: ") and faithful.endswith("Rating: ")


def test_long_samples_are_cut_to_max_len(judge):
    model, tok = judge
    long = Sample(instruction="Explain. " * 400, output="Because. " * 900)
    builder = PromptBuilder(JudgeTemplates.load(), tok, "chat", 256)
    tree = builder.tree(long)
    assert max(len(tree.prompt(m)) for m in range(6)) <= 256
    assert max(len(p) for p in builder.faithful(long)) <= 256
    frame = QualitySignal(max_len=256).compute([long], model, tok)
    assert 0 <= frame["quality"].iloc[0] <= 10


@pytest.mark.parametrize(
    ("reply", "rating"),
    [("7/10 because it is clear", 7.0), ("Score: 12", 10.0), ("none", None), (" 8.5 - good", 8.5),
     ("-3", 3.0), ("", None)],
)
def test_first_number_in_a_reply_clipped_to_0_10(reply, rating):
    assert parse_rating(reply) == rating


def test_generate_mode_reads_the_number_and_counts_replies_without_one(judge):
    model, tok = biased(judge, "7")
    signal = QualitySignal(mode="generate", max_new_tokens=1)
    frame = signal.compute(SAMPLES[:2], model, tok)
    assert (frame == 7.0).all().all() and signal.report.unparseable == 0

    model, tok = biased(judge, "none")
    signal = QualitySignal(mode="generate", max_new_tokens=4)
    frame = signal.compute(SAMPLES[:2], model, tok)
    assert (frame == 0.0).all().all()
    assert signal.report.unparseable == 12 and frame.attrs["report"]["unparseable"] == 12


@pytest.mark.parametrize(
    ("text", "closed"),
    [("7", False), ("7/", True), (" 7", False), ("7.", False), ("7.5 ", True), ("none", False), ("1", False)],
)
def test_generation_stops_once_the_first_number_is_complete(text, closed):
    from middo_core.signals.judge_transformers import _number_closed

    assert _number_closed(text) is closed


def test_logprobs_mode_is_the_expected_score(judge):
    model, tok = biased(judge, "7")
    frame = QualitySignal().compute(SAMPLES[:1], model, tok)
    assert frame["quality"].iloc[0] == pytest.approx(7.0, abs=1e-3)
    # "10" is the tokens "1","0" with this tokenizer: P("1") splits into 1 and 10 by a second step.
    import torch

    model, tok = biased(judge, "1", "0")
    signal = QualitySignal()
    frame = signal.compute(SAMPLES[:1], model, tok)
    builder = PromptBuilder(JudgeTemplates.load(), tok, "chat", 1024)
    prompt = builder.tree(SAMPLES[0]).prompt(0)  # instruction clarity
    one = builder.score.digit_ids[1]
    with torch.no_grad():
        p = torch.softmax(model(torch.tensor([prompt])).logits[0, -1].float(), -1)
        after = torch.softmax(model(torch.tensor([[*prompt, one]])).logits[0, -1].float(), -1)
    digits = p[builder.score.digit_ids]
    p1, p0 = float(digits[1] / digits.sum()), float(digits[0] / digits.sum())
    q = float(after[builder.score.digit_ids].sum())
    assert p0 + p1 == pytest.approx(1.0, abs=1e-3) and q > 0.99
    assert frame["instruction_clarity"].iloc[0] == pytest.approx(10 * p1 * q + p1 * (1 - q), abs=1e-3)
    assert 3 < frame["quality"].iloc[0] < 7  # mostly "0" or "10", each about half
    assert signal.report.score_mass_mean == pytest.approx(1.0, abs=1e-3)


def test_score_tokens_of_smollm2():
    from middo_core.models.loader import SMOLLM2_ALIAS, load_tokenizer

    tok = load_tokenizer(SMOLLM2_ALIAS)
    st = PromptBuilder(JudgeTemplates.load(), tok, "chat", 1024).score
    assert [tok.decode([i]) for i in st.digit_ids] == [str(d) for d in range(10)]
    assert st.ten_id is None and st.ten_two_step
    assert tok.decode(st.answer_ids).endswith("Rating: ")


def test_template_hash_follows_the_template_text(tmp_path, monkeypatch):
    from middo_core.prompts import PROMPTS_DIR, load_template

    copy = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, copy)
    monkeypatch.setenv("MIDDO_PROMPTS_DIR", str(copy))
    before = QualitySignal().template_hash()
    assert before == QualitySignal().template_hash()
    template = load_template("judge_response")
    assert len(template.hash) == 12
    (copy / "judge_response.txt").write_text(template.text.replace("strict", "very strict") + "\n")
    assert load_template("judge_response").hash != template.hash
    assert QualitySignal().template_hash() != before


def test_progress_is_reported_and_cancel_stops(judge):
    from middo_core.progress import Cancelled

    model, tok = judge
    events = []
    QualitySignal(batch_size=1).compute(SAMPLES, model, tok, progress=events.append)
    assert events[-1].done == events[-1].total == 3

    def cancel(ev):
        if ev.done >= 1:
            raise Cancelled()

    with pytest.raises(Cancelled):
        QualitySignal(batch_size=1).compute(SAMPLES, model, tok, progress=cancel)


def test_registered_as_the_quality_signal():
    from middo_core.signals.base import SIGNALS

    assert SIGNALS.get("quality") is QualitySignal
    with pytest.raises(ValueError):
        QualitySignal(mode="guess")


def test_pmi_mode_losses_match_a_plain_masked_loss(judge):
    import math

    import torch

    from middo_core.signals.encode import encode_all
    from middo_core.signals.judge_pmi import pmi_scores

    model, tok = judge
    frame = pmi_scores(SAMPLES, model, tok)
    end_marker = tok.convert_tokens_to_ids("<|im_end|>")
    for sample in SAMPLES:
        row = frame.loc[sample.id]
        bare = Sample(instruction="", output=sample.output)
        for source, column in ((sample, "loss_conditional"), (bare, "loss_unconditional")):
            enc = encode_all([source], tok, "chat", 1024)[0]
            labels = torch.tensor([[-100] * enc.prompt_len + enc.ids[enc.prompt_len:]])
            with torch.no_grad():
                out = model(torch.tensor([enc.ids]), labels=labels)
            assert row[column] == pytest.approx(float(out.loss), abs=1e-4)
        enc = encode_all([sample], tok, "chat", 1024)[0]
        assert enc.ids[-1] == end_marker  # the response ends with the turn's end marker
        with torch.no_grad():
            before_end = model(torch.tensor([enc.ids])).logits[0, -2]
        assert row["end_logprob"] == pytest.approx(float(torch.log_softmax(before_end, -1)[end_marker]), abs=1e-4)
        assert row["pmi"] == pytest.approx(row["loss_unconditional"] - row["loss_conditional"])
        relevance = min(max(1 - row["ifd"], 0), 1)
        assert row["quality"] == pytest.approx(10 * relevance * math.exp(row["end_logprob"]))
        assert math.isfinite(row["quality"])
    empty = Sample(instruction="Say something.", output="")
    assert pmi_scores([empty], model, tok).loc[empty.id, "quality"] == 0

    signal = QualitySignal(mode="pmi")
    out = signal.compute(SAMPLES, model, tok)
    assert out["quality"].tolist() == pytest.approx(frame["quality"].tolist(), abs=1e-4)
    assert out[list(METRIC_COLUMNS)].isna().all().all()  # no ratings in this mode
    assert signal.report.tokens_fed > 0 and signal.report.mode == "pmi"
    with pytest.raises(ValueError, match="transformers"):
        QualitySignal(mode="pmi", backend="endpoint").compute(SAMPLES, None, None)
