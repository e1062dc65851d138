"""Quality signal ("self-alignment scores"): the model rates each sample on six metrics, 0-10.

Metrics: {clarity, completeness, factuality} x {the instruction alone, the response given its
instruction}. quality = mean over the three dimensions of the mean of the instruction and response
ratings. Modes:
- logprobs (default): one forward pass per prompt; the expected score under the next-token
  distribution restricted to "0".."10". No decoding, no unparseable replies.
- generate: the paper's rule: sample a reply (temperature 0.1, top_p 0.7, top_k 50, seeded),
  take its first number clipped to 0-10; a reply without a number scores 0 and is counted.
- pmi (a deviation from the paper, for small judges; see docs/BENCHMARKS.md "Quality judge"):
  no rating prompt; quality = 10 * (1 - IFD) * P(end of turn): how much the instruction explains
  the response (its loss with and without the instruction) times how sure the model is that the
  response is finished (middo_core/signals/judge_pmi.py). The six metric columns are NaN here.
- pmi-ppl (the small-model default until pmi-novel; docs/EVIDENCE.md "Default quality signal"): 10 x the
  geometric mean of pmi's two factors and exp(-L_pre), the base model's per-token probability of
  the response (its inverse perplexity): a response the reference model finds implausible scores
  lower. No extra pass: L_pre is the complexity signal's loss under the base model.
- pmi-novel (the small-model default; docs/EVIDENCE.md "Quality: repetition and restating"):
  pmi-ppl with its relevance read over the response's own tokens (those neither repeating an
  earlier n-gram of the response nor restating the request) and the share of own tokens as a
  fourth factor (middo_core/signals/judge_novel.py); one more pass under the judge than pmi-ppl.
- auto (the configured default) is not a mode of its own: `resolve_quality_mode` picks logprobs
  for a judge model of 7B parameters or more, the paper's scale, and pmi-novel below it; the
  diagnosis report's `quality` entry records the mode run, the setting and the reason.
The default prompt layout shares each sample's prefix across its six prompts (sample first,
question after); `faithful=True` uses the paper's order (rubric first) with no reuse.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, Field, PrivateAttr

from middo_core.progress import ProgressFn
from middo_core.sample import Sample
from middo_core.signals.base import SIGNALS, LossPass, Role, Signal, cache_key
from middo_core.signals.judge_prompts import DIMENSIONS, METRIC_COLUMNS, JudgeTemplates

if TYPE_CHECKING:
    from middo_core.llm import LLMClient
    from middo_core.models.source import LoadedModel, ModelSource

COLUMNS: tuple[str, ...] = (*METRIC_COLUMNS, "quality")
SELF_JUDGE_MODES = ("logprobs", "generate")  # the paper's judge: the model rates its own data
SELF_JUDGE_PARAMS = 7e9  # the paper's self-judges: LLaMA-3.1-8B and Mistral-7B
SMALL_JUDGE_MODE = "pmi-novel"  # what `auto` runs below that size
LOSS_MODES = ("pmi", "pmi-ppl", "pmi-novel")  # modes read from the shared loss passes, with no
# rating prompt


class QualityReport(BaseModel):
    """What one `compute` call did: shown in the CLI and app, kept with the run."""

    mode: str
    layout: Literal["shared", "faithful"]
    backend: str
    template_hash: str
    samples: int = 0
    prompts: int = 0
    tokens_fed: int = 0
    forward_calls: int = 0
    unparseable: int = 0  # generate mode: replies with no number, scored 0
    score_mass_mean: float | None = None  # logprobs: mean P(a score token) before renormalizing
    seconds: float = 0.0


@SIGNALS.register
class QualitySignal(Signal):
    """Six self-judge ratings and their average per sample (see the module docstring)."""

    name: Literal["quality"] = "quality"
    mode: Literal["logprobs", "generate", "pmi", "pmi-ppl", "pmi-novel"] = "logprobs"
    faithful: bool = False  # the paper's layout: rubric first, then the sample (no prefix sharing)
    batch_size: int = Field(8, gt=0)  # samples per step (shared layout) or prompts (faithful)
    max_len: int = Field(1024, gt=64)
    prompt_format: Literal["chat", "plain"] = "chat"
    backend: Literal["transformers", "vllm", "endpoint"] = "transformers"
    temperature: float = 0.1
    top_p: float = 0.7
    top_k: int = 50
    max_new_tokens: int = Field(12, gt=0)
    seed: int = 0
    vllm_model: str | None = None  # vllm backend: model name or folder (default: the judge's)
    endpoint_model: str | None = None  # endpoint backend: model name (default: $OPENAI_MODEL)
    endpoint_concurrency: int = Field(8, gt=0)
    endpoint_timeout_s: float = 60.0
    _report: QualityReport | None = PrivateAttr(default=None)
    _llm: LLMClient | None = PrivateAttr(default=None)
    _covered: int | None = PrivateAttr(default=None)
    _faithful_run: bool | None = PrivateAttr(default=None)  # pmi: the run's layout setting
    _setting: tuple[str, str] | None = PrivateAttr(default=None)  # (quality_mode as set, reason)
    columns: ClassVar[tuple[str, ...]] = COLUMNS
    role: ClassVar[Role | None] = "judge"
    stage: ClassVar[str] = "quality: self-judgement"
    report_field: ClassVar[str] = "quality"

    @classmethod
    def from_config(cls, cfg) -> QualitySignal:
        """cfg.judge_model: the model that judges (the diagnosis names it; `auto` reads its size)."""
        mode, reason = resolve_quality_mode(cfg, cfg.judge_model)
        if mode in LOSS_MODES:  # the judge's losses: the loss pass's settings
            signal = cls(mode=mode, max_len=cfg.max_len, prompt_format=cfg.prompt_format)
            signal._faithful_run = cfg.faithful
        else:
            signal = cls(mode=mode, faithful=cfg.faithful, max_len=cfg.max_len,
                         prompt_format=cfg.prompt_format, batch_size=cfg.batch_size,
                         backend=resolve_judge_backend(getattr(cfg, "judge_backend", "auto")))
        signal._setting = (cfg.quality_mode, reason)
        return signal

    def key(self, fingerprint: str) -> str:
        params = self.model_dump(mode="json", exclude={"name", "batch_size", "endpoint_concurrency",
                                                       "endpoint_timeout_s"})
        return cache_key("quality", fingerprint, self.template_hash(), params)

    def inputs(self) -> dict[str, LossPass]:
        """pmi: two loss passes of the judge. The conditional one is the loss pass under the judge
        (the post model's pass when the judge is the post model); the other scores each response
        after an empty user turn (its own sample id). pmi-ppl: also the base model's loss pass
        (the complexity signal's L_pre). Other modes judge in `compute`."""
        if self.mode not in LOSS_MODES:
            return {}
        from middo_core.signals.complexity import STAGE_PRE
        from middo_core.signals.judge_pmi import STAGE

        passes = {"cond": LossPass("judge", last_nll=True, stage=STAGE, label="quality")}
        if self.mode == "pmi-novel":  # its own pass holds the response-only half
            from middo_core.signals.judge_novel import STAGE as NOVEL_STAGE

            passes["novel"] = LossPass("judge", novel=True, stage=NOVEL_STAGE, label="quality")
        else:
            passes["uncond"] = LossPass("judge", response_only=True, stage=STAGE, label="quality")
        if self.mode in ("pmi-ppl", "pmi-novel"):
            passes["reference"] = LossPass("base", stage=STAGE_PRE, label="base")
        return passes

    def from_inputs(self, ids: list[str], inputs: dict[str, Any],
                    progress: ProgressFn | None = None) -> dict[str, list]:
        from middo_core.signals.judge_pmi import end_logprob, pmi_frame
        from middo_core.signals.passes import finite

        cond = inputs["cond"].loss
        reference = ([inputs["reference"].loss[i]["loss"] for i in ids]
                     if "reference" in inputs else None)
        conditional = [(cond[i]["loss"], end_logprob(cond[i]["loss"], cond[i]["last_nll"],
                                                     cond[i]["truncated"])) for i in ids]
        if "novel" in inputs:  # pmi-novel: relevance over the response's own tokens
            from middo_core.signals.judge_novel import novel_frame

            frame = novel_frame(ids, conditional, [inputs["novel"].loss[i] for i in ids],
                                reference)
            self._covered = 2 * len(ids)
        else:
            uncond = inputs["uncond"].loss
            bare = inputs["uncond"].ids_of  # sample id -> its response-only sample's id
            frame = pmi_frame(ids, conditional, [uncond[bare[i]]["loss"] for i in ids], reference)
            self._covered = len(ids) + len(set(bare.values()))
        return {c: [finite(frame.at[i, c]) if c in frame else None for i in ids] for c in COLUMNS}

    def describe(self, stats: dict[str, float]) -> dict[str, Any]:
        faithful = self.faithful if self._faithful_run is None else self._faithful_run
        out = {"mode": self.mode, "faithful": faithful, "template_hash": self.template_hash(),
               "unparseable": int(stats.get("unparseable", 0))}
        if self._setting is not None:  # how the mode was chosen (the rule's choice under `auto`)
            out["setting"], out["reason"] = self._setting
        return {**out, "covered": self._covered} if self._covered is not None else out

    def load(self, source: ModelSource, model_name: str) -> LoadedModel:
        from middo_core.models.source import LoadedModel

        if self.backend == "transformers":
            return source.loaded(model_name)
        if self.backend == "vllm" and not self.vllm_model:
            self.vllm_model = model_name  # the engine (or managed server) of this model
        return LoadedModel(model_name, None, source.tokenizer(model_name))

    def chunk_size(self) -> int:
        return max(64, self.batch_size)  # samples judged between cache checkpoints

    def batch_stats(self) -> dict[str, float]:
        rep = self._report
        return {} if rep is None else {"tokens": rep.tokens_fed, "forward_calls": rep.forward_calls,
                                       "unparseable": rep.unparseable}

    @property
    def report(self) -> QualityReport | None:
        """The report of the last `compute` call (also in the result's `attrs["report"]`)."""
        return self._report

    @property
    def llm(self) -> LLMClient | None:
        """The LLM client the endpoint backend asks (None: one of its own, without cache or budget)."""
        return self._llm

    def use_llm(self, client: LLMClient) -> QualitySignal:
        """Judge through `client` (endpoint backend): its backend's retries and key, its cache,
        budget and usage, as refinement's calls have. A run setting, not a parameter: the
        scores and their cache key do not depend on it."""
        self._llm = client
        return self

    def template_hash(self) -> str:
        """Identifies the judge templates and how they are used (layout, scoring mode): a cache key."""
        layout = "faithful" if self.faithful else "shared"
        return JudgeTemplates.load().hash(layout, self.mode, self.prompt_format)

    def compute(self, samples: list[Sample], model, tokenizer=None,
                progress: ProgressFn | None = None):
        """One row per distinct sample id: the six ratings and `quality`, all 0..10. model: a
        LoadedModel (as the diagnosis hands it), or a model and its tokenizer."""
        import pandas as pd

        from middo_core.models.source import LoadedModel

        if isinstance(model, LoadedModel):
            model, tokenizer = model.model, model.tokenizer

        from middo_core.signals.judge_backends import JUDGE_BACKENDS

        unique = list({s.id: s for s in samples}.values())
        started = time.perf_counter()
        index = pd.Index([s.id for s in unique], name="sample_id")
        if self.mode in ("pmi-ppl", "pmi-novel"):
            raise ValueError(f"mode {self.mode!r} reads the base model's losses too: run it "
                             "through the diagnosis (middo_core.diagnose), which shares the loss "
                             "passes")
        if self.mode == "pmi":
            result = self._pmi(unique, model, tokenizer, progress)
            frame = pd.DataFrame(float("nan"), index=index, columns=list(METRIC_COLUMNS))
            frame["quality"] = result.ratings
        else:
            result = JUDGE_BACKENDS.get(self.backend)().rate(self, unique, model, tokenizer, progress)
            frame = pd.DataFrame(result.ratings, columns=list(METRIC_COLUMNS), dtype=float)
            frame.index = index
            frame["quality"] = aggregate(frame)
        self._report = QualityReport(
            mode=self.mode,
            layout="faithful" if self.faithful else "shared",
            backend=self.backend,
            template_hash=self.template_hash(),
            samples=len(unique),
            prompts=6 * len(unique),
            tokens_fed=result.tokens_fed,
            forward_calls=result.forward_calls,
            unparseable=result.unparseable,
            score_mass_mean=(
                sum(result.score_mass) / len(result.score_mass) if result.score_mass else None
            ),
            seconds=time.perf_counter() - started,
        )
        frame.attrs["report"] = self._report.model_dump()
        return frame

    def _pmi(self, samples: list[Sample], model, tokenizer, progress: ProgressFn | None):
        from middo_core.signals.judge_backends import JudgeResult
        from middo_core.signals.judge_pmi import pmi_scores

        if self.backend != "transformers":
            raise ValueError("mode 'pmi' needs the model's own losses: use backend 'transformers'")
        counter: dict = {}
        scores = pmi_scores(samples, model, tokenizer, self.prompt_format, self.max_len, progress,
                            counter)
        return JudgeResult(
            ratings=scores["quality"].tolist(), tokens_fed=counter.get("tokens_fed", 0),
            forward_calls=counter.get("forward_calls", 0),
        )


def parameter_count(model_name: str) -> int | None:
    """Parameters of a model folder, read from its safetensors headers (no weights loaded), or
    from config.json on the meta device; None for a hub id this machine cannot read."""
    import json
    import struct
    from pathlib import Path

    from middo_core.models.loader import resolve_model_path

    path = Path(resolve_model_path(model_name))
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    if files:
        total = 0
        for file in files:
            with file.open("rb") as fh:
                (size,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(size))
            for name, info in header.items():
                if name != "__metadata__":
                    count = 1
                    for dim in info["shape"]:
                        count *= dim
                    total += count
        return total
    if not (path / "config.json").exists():
        return None
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    return sum(p.numel() for p in model.parameters())


def _size(params: int) -> str:
    return f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.0f}M"


def resolve_quality_mode(cfg, judge_model: str | None) -> tuple[str, str]:
    """The quality mode a diagnosis runs, and why. `signals.quality_mode` as set; `auto` (the
    default): the paper's self-judge (`logprobs`) when the judge model has SELF_JUDGE_PARAMS
    parameters or more, the paper's scale, else SMALL_JUDGE_MODE, which needs no rating from the
    model; a model whose size cannot be read (a hub id offline) counts as small."""
    if cfg.quality_mode != "auto":
        reason = f"signals.quality_mode is set to {cfg.quality_mode}"
        params = parameter_count(judge_model) if judge_model and cfg.quality_mode in SELF_JUDGE_MODES else None
        if params is not None and params < SELF_JUDGE_PARAMS:  # kept, with what auto would run
            reason += (f"; with a judge model of {_size(params)} parameters (under 7B) a self-judge "
                       f"rates near chance, and auto would run {SMALL_JUDGE_MODE} (a workspace made "
                       "before auto was the default has logprobs written in its middo.yaml)")
        return cfg.quality_mode, reason
    params = parameter_count(judge_model) if judge_model else None
    if params is None:
        return SMALL_JUDGE_MODE, (f"auto: the size of the judge model {judge_model or '(none)'} "
                                  f"is unknown, so the {SMALL_JUDGE_MODE} mode, which needs no "
                                  "rating from the model")
    if params >= SELF_JUDGE_PARAMS:
        return "logprobs", (f"auto: the judge model has {_size(params)} parameters (7B or more, "
                            "the paper's scale): the paper's self-judge")
    return SMALL_JUDGE_MODE, (f"auto: the judge model has {_size(params)} parameters (under 7B, "
                              f"where a self-judge rates near chance): the {SMALL_JUDGE_MODE} "
                              "mode; set signals.quality_mode: logprobs for the paper's self-judge")


def resolve_judge_backend(setting: str) -> str:
    """`signals.judge_backend` as set; `auto`: vLLM where it imports in this process (it rated
    2-3x faster than transformers per prompt here), else transformers. A managed server is not
    started by auto: each iteration judges with a new fine-tuned model, which would need a
    server start (~50 s on 2 cores) and its memory of its own."""
    if setting != "auto":
        return setting
    import importlib.util

    return "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"


def aggregate(frame):
    """quality = mean over dimensions of mean(instruction rating, response rating)."""
    per_dimension = [
        (frame[f"instruction_{d}"] + frame[f"response_{d}"]) / 2 for d in DIMENSIONS
    ]
    return sum(per_dimension) / len(DIMENSIONS)
