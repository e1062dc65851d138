"""Workspace configuration: pydantic models read from and written to `middo.yaml`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

CONFIG_FILE = "middo.yaml"
DEFAULT_MODEL = "smollm2-135m"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignalsConfig(_Section):
    prompt_format: Literal["chat", "plain"] = "chat"  # model chat template, or the paper's Human:/Assistant:
    max_len: int = Field(1024, gt=8)
    batch_size: int = Field(8, gt=0)
    k: int = Field(2, gt=0)
    knn_backend: Literal["auto", "torch", "faiss"] = "auto"
    quality_mode: Literal["auto", "logprobs", "generate", "pmi", "pmi-ppl", "pmi-novel"] = "auto"
    judge_model: str | None = None  # None: the current fine-tuned model, as in the paper
    # where the self-judge runs (logprobs and generate modes); auto: vLLM in-process where it
    # imports (the `vllm` extra), else transformers. vllm: also vLLM's managed server of the
    # judge model where it does not (docs/BENCHMARKS.md, "vLLM against the project's code")
    judge_backend: Literal["auto", "transformers", "vllm", "endpoint"] = "auto"
    faithful: bool = False  # the paper's prompt layout (rubric first) instead of prefix sharing
    device: str = "auto"


class SelectionConfig(_Section):
    m_complexity: float = 1.0
    m_diversity: float = -1.5
    m_quality: float = -1.5
    target_fraction: float = Field(0.15, gt=0, lt=1)


class RefineConfig(_Section):
    # vllm: a `vllm serve` of `model` that the product starts on loopback and reuses (make setup
    # installs vLLM's environment); auto: vllm where that environment is installed, else local
    backend: Literal["auto", "local", "openai", "vllm"] = "auto"
    model: str = DEFAULT_MODEL
    template_variant: Literal["full", "compact"] = "compact"
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 384
    keep_truncated: bool = False  # an answer cut at max_new_tokens is stored as failed, with why
    concurrency: int = Field(16, gt=0)
    timeout_s: float = 60.0
    max_retries: int = 5
    budget_usd: float | None = None
    price_per_1k_input: float = 0.0
    price_per_1k_output: float = 0.0
    vllm_start_timeout_s: float = Field(600.0, gt=0)  # ~1.5 min on 2 cores, 4+ under heavy load
    vllm_kv_cache_gib: float = Field(2.0, gt=0)  # VLLM_CPU_KVCACHE_SPACE for vLLM's CPU build
    vllm_args: list[str] = Field(default_factory=list)  # more `vllm serve` arguments


class TrainConfig(_Section):
    preset: Literal["cpu-small", "paper-7b", "custom"] = "cpu-small"
    method: Literal["full", "lora"] = "full"
    learning_rate: float = 5e-5
    epochs: float = 1.0
    batch_size: int = 4
    grad_accum: int = 1
    max_len: int = 512
    warmup_ratio: float = 0.03
    scheduler: str = "cosine"
    bf16: bool = True
    lora_r: int = 16
    num_gpus: int = 0  # 0: every visible GPU (or CPU when there is none)
    seed: int = 0


class EvalConfig(_Section):
    suite: list[str] = Field(default_factory=lambda: ["heldout", "demo_exact"])
    sample_size: int = 50


class LoopConfig(_Section):
    iterations: int = Field(3, ge=0)
    review: Literal["manual", "auto"] = "manual"  # auto: a policy decides, no curator in the loop
    review_policy: str = "auto"
    selection: Literal["stored", "auto-m"] = "stored"  # auto-m: the mildest m's reaching the target
    axes: list[Literal["complexity", "diversity", "quality"]] = Field(
        default_factory=lambda: ["complexity", "diversity", "quality"])
    control: Literal["none", "random"] = "none"  # random: flag as many samples at random
    reference: str | None = None  # for a random control: the workspace whose counts it copies
    # the Studio starts iteration 0 by itself when it first opens this workspace with nothing done
    # yet (the built-in demo sets it, so a newcomer sees the loop move without looking for a button)
    autostart: bool = False


class CanaryConfig(_Section):
    """Synthetic defects scored beside every diagnosis to measure each signal's power on this
    workspace's own data (middo_core/canaries.py). They are stored apart from the samples and
    never enter a version, an export, a training set, a threshold or a flag count."""

    enabled: bool = True
    # canaries per kind; None: 10% of the samples spread over the kinds, at least `min_per_kind`
    per_kind: int | None = Field(None, gt=0)
    min_per_kind: int = Field(2, gt=0)
    max_per_kind: int = Field(64, gt=0)
    kinds: list[str] | None = None  # None: every kind (middo_core.canaries.KINDS)
    seed: int = 0


class ReviewConfig(_Section):
    """Review overlap (middo_core/overlap.py): each proposal is decided by `overlap` curators and
    its outcome is their majority, a tie broken by the owners. 1: one decision is the outcome."""

    overlap: int = Field(1, ge=1)
    # who breaks a tie: actor names as the audit trail records them (a typed name, or a
    # signed-in identity's e-mail address)
    owners: list[str] = Field(default_factory=list)


Role = Literal["viewer", "curator", "owner"]


class AccessConfig(_Section):
    """Who may do what in a Studio served with sign-in (docs/RELIABILITY.md, "Serving the Studio
    to a team"). The CLI and a Studio on loopback without sign-in act as the owner."""

    # a signed-in user matched by no entry below; none: they see nothing of the workspace
    default_role: Literal["none", "viewer", "curator", "owner"] = "none"
    # an e-mail address, a subject (the provider's `sub`) or "@domain" -> viewer | curator | owner
    roles: dict[str, Role] = Field(default_factory=dict)


class WorkspaceConfig(_Section):
    name: str = "workspace"
    base_model: str = DEFAULT_MODEL
    seed: int = 0
    signals: SignalsConfig = Field(default_factory=SignalsConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    refine: RefineConfig = Field(default_factory=RefineConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    loop: LoopConfig = Field(default_factory=LoopConfig)
    canaries: CanaryConfig = Field(default_factory=CanaryConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    access: AccessConfig = Field(default_factory=AccessConfig)


class ConfigError(ValueError):
    """middo.yaml is unreadable or invalid; the message names the file and field."""


def load_config(path: Path) -> WorkspaceConfig:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML{_where(exc)}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected settings as 'key: value' lines, found a "
                          f"{type(raw).__name__} (restore the file from a backup)")
    try:
        return WorkspaceConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: field '{field}': {first['msg']}") from exc


def _where(exc: yaml.YAMLError) -> str:
    """' at line L, column C: problem' from a YAML error, on one line (its str() spans several)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or ""
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{at}: {problem}" if problem else at


def save_config(config: WorkspaceConfig, path: Path) -> None:
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    tmp.replace(path)  # atomic: a crash never leaves half a config
