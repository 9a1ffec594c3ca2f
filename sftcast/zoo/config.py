"""The zoo's variant axes: model size, objective, learning rate, data mixture, filters, steps.

A run configuration (`configs/*.yaml`) holds these under `parameters.zoo`. Every model forbids
unknown keys, so a typo in YAML fails with the key's name instead of being silently ignored.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sftcast.data.schema import CORPUS_DOMAINS
from sftcast.zoo.objectives import OBJECTIVES

# Bumped when the training code changes what a configuration produces, so old zoos retrain.
TRAINING_CODE_VERSION = 1
# Variant names become folder names and appear in `zoo:<name>@<step>` URIs: no separators.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

# Settings added after zoos were trained: they enter the config hash only when set away from
# their default (the value the code had), so a variant that leaves them keeps its hash.
HASHED_WHEN_CHANGED = ("warmup_ratio", "min_lr_ratio", "betas", "weight_decay", "grad_clip")
Beta = Annotated[float, Field(ge=0, lt=1)]

BASE_MIXTURE: dict[str, float] = {
    **{d: 0.1 for d in CORPUS_DOMAINS if d.startswith("news-")},
    "knowledge": 0.25,
    "trivia": 0.25,
}


class ModelSize(BaseModel):
    """Llama dimensions; the vocabulary size comes from the shared tokenizer."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    hidden_size: int = Field(128, gt=0)
    num_layers: int = Field(4, gt=0)
    num_heads: int = Field(2, gt=0)
    intermediate_size: int = Field(384, gt=0)
    max_length: int = Field(256, gt=0, description="max_position_embeddings")

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> ModelSize:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError("the head dimension must be even (rotary embeddings)")
        return self


class VariantSettings(BaseModel):
    """Everything a pre-training run sets but its name: `zoo.variant_defaults` holds the
    settings its variants share, each variant says what differs."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    family: str = Field("", description="free label of the axis this variant varies")
    objective: str = "clm"
    learning_rate: float = Field(2e-3, gt=0, le=1)
    mixture: dict[str, float] = Field(default_factory=lambda: dict(BASE_MIXTURE))
    length_band: tuple[float, float] = Field(
        (0.0, 1.0), description="token-length quantile band of documents kept"
    )
    domain_tag: bool = False
    steps: int = Field(200, gt=0)
    checkpoint_steps: list[int] = Field(
        default_factory=list, validate_default=True, description="empty: the last step only"
    )
    batch_size: int = Field(8, gt=0)
    seq_len: int = Field(256, ge=16)
    seed: int = Field(0, ge=0)
    model: ModelSize | None = Field(None, description="None: the zoo's model size")
    # AdamW with a warm-up then cosine decay; see HASHED_WHEN_CHANGED.
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="share of steps (at least one)")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine floor, share of the peak")
    betas: tuple[Beta, Beta] = (0.9, 0.95)
    weight_decay: float = Field(0.1, ge=0, description="matrices only, not the norms")
    grad_clip: float = Field(1.0, gt=0, description="max gradient norm")

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, objective: str) -> str:
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; expected one of {list(OBJECTIVES)}")
        return objective

    @field_validator("mixture")
    @classmethod
    def _valid_mixture(cls, mixture: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(mixture) - set(CORPUS_DOMAINS))
        if unknown:
            raise ValueError(f"unknown corpus domain(s) {unknown}; expected {list(CORPUS_DOMAINS)}")
        if any(w < 0 for w in mixture.values()) or sum(mixture.values()) <= 0:
            raise ValueError(f"mixture weights must be >= 0 with a positive sum, got {mixture}")
        total = math.fsum(mixture.values())  # exact: the base mixture stays exactly itself
        return {d: w / total for d, w in sorted(mixture.items()) if w > 0}

    @field_validator("length_band")
    @classmethod
    def _valid_band(cls, band: tuple[float, float]) -> tuple[float, float]:
        lo, hi = band
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"length_band must satisfy 0 <= low < high <= 1, got {band}")
        return band

    @field_validator("checkpoint_steps")
    @classmethod
    def _valid_checkpoints(cls, checkpoints: list[int], info: ValidationInfo) -> list[int]:
        steps = info.data.get("steps")
        if steps is None:  # `steps` itself failed validation; that error is reported
            return checkpoints
        checkpoints = checkpoints or [steps]
        if sorted(set(checkpoints)) != checkpoints:
            raise ValueError(f"checkpoint_steps must be strictly increasing, got {checkpoints}")
        if checkpoints[0] < 1 or checkpoints[-1] != steps:
            raise ValueError(
                f"checkpoint_steps must lie in [1, steps] and end at steps={steps}, "
                f"got {checkpoints}"
            )
        return checkpoints

    @model_validator(mode="after")
    def _fits_model(self) -> VariantSettings:
        if self.model is not None and self.seq_len > self.model.max_length:
            raise ValueError(f"seq_len {self.seq_len} exceeds max_length {self.model.max_length}")
        return self


class Variant(VariantSettings):
    """One pre-training run; its checkpoints are the zoo's candidates."""

    name: str = Field(pattern=NAME_PATTERN, max_length=100)

    @property
    def size(self) -> ModelSize:
        return self.model or ModelSize()

    @property
    def config_hash(self) -> str:
        """sha256 of everything that shapes the weights (not the name or family label)."""
        fields = Variant.model_fields
        unchanged = {k for k in HASHED_WHEN_CHANGED if getattr(self, k) == fields[k].default}
        payload = self.model_dump(mode="json", exclude={"name", "family", *unchanged})
        payload["model"] = self.size.model_dump(mode="json")
        payload["training_code_version"] = TRAINING_CODE_VERSION
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def run_name(self) -> str:
        """The variant's folder in the zoo root: `<name>-<hash8>`."""
        return f"{self.name}-{self.config_hash[:8]}"


def _external_uri(uri: str) -> str:
    """An entry of `zoo.candidates`: `hf:<repo>@<revision>` or a local folder; the zoo's own
    checkpoints come from `variants`. The folder itself is verified before a run starts."""
    uri = uri.strip()
    if not uri:
        raise ValueError("empty candidate URI; expected hf:<owner>/<repo>@<revision> or a path")
    if uri.startswith("zoo:"):
        name = uri.removeprefix("zoo:").partition("@")[0]
        path = "" if is_valid_name(name) else f"{name!r} is not a variant name (no paths); "
        raise ValueError(
            f"{uri!r}: {path}the zoo's own checkpoints come from zoo.variants; zoo.candidates "
            "takes hf:<owner>/<repo>@<revision> URIs and local Hugging Face folders"
        )
    return uri


class ZooConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    root: Path = Path("artifacts/zoo")
    tokenizer_vocab_size: int = Field(4096, ge=512, le=65536)
    model: ModelSize = Field(default_factory=ModelSize)
    # What every variant gets unless it says otherwise (the zoo's `model` size too).
    variant_defaults: VariantSettings = Field(default_factory=VariantSettings)
    variants: list[Variant] = Field(min_length=1)
    # Checkpoints the zoo does not train (users bring their own): hf:<repo>@<revision> or a
    # local Hugging Face folder, verified like the zoo's before anything runs.
    candidates: list[Annotated[str, AfterValidator(_external_uri)]] = Field(default_factory=list)
    trust_remote_code: bool = Field(False, description="allow custom modelling code (auto_map)")
    allow_pickle: bool = Field(False, description="convert pickle-only weights to safetensors")

    @model_validator(mode="before")
    @classmethod
    def _fill_variants(cls, data: Any) -> Any:
        """Each variant is the zoo's model size, then `variant_defaults`, then its own keys;
        filled in before validation, so seq_len is checked against the size it trains with."""
        if not isinstance(data, dict) or not isinstance(data.get("variants"), list):
            return data
        shared = _given(data.get("variant_defaults", {}))
        model = data.get("model", ModelSize())
        if shared is None or not isinstance(model, dict | ModelSize):
            return data  # reported by the fields' own validation
        filled = []
        for variant in data["variants"]:
            own = _given(variant)
            if own is None:
                filled.append(variant)
                continue
            merged = {**shared, **own}
            if merged.get("model") is None:
                merged["model"] = model
            filled.append(merged)
        return {**data, "variants": filled}

    @model_validator(mode="after")
    def _unique(self) -> ZooConfig:
        names = [v.name for v in self.variants]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate variant names: {duplicates}")
        twice = sorted({u for u in self.candidates if self.candidates.count(u) > 1})
        if twice:
            raise ValueError(f"candidates listed twice: {twice}")
        return self

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / "tokenizer"

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"no variant {name!r} in the zoo; known: {[v.name for v in self.variants]}")

    def zoo_candidates(self) -> list[str]:
        """Every checkpoint of every variant as a `zoo:<variant>@<step>` URI."""
        return [f"zoo:{v.name}@{s}" for v in self.variants for s in v.checkpoint_steps]

    def all_candidates(self) -> list[str]:
        """The zoo's checkpoints, then the external `candidates`."""
        return [*self.zoo_candidates(), *self.candidates]

    @classmethod
    def from_run_config(cls, path: str | Path) -> ZooConfig:
        """The `parameters.zoo` section of a ZenML run configuration file."""
        raw: Any = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        section = (raw.get("parameters") or {}).get("zoo") if isinstance(raw, dict) else None
        if section is None:
            raise ValueError(f"{path}: no parameters.zoo section")
        return cls.model_validate(section)


def _given(settings: Any) -> dict[str, Any] | None:
    """The keys `settings` (a mapping or a validated model) sets itself; None if neither."""
    if isinstance(settings, BaseModel):
        return settings.model_dump(exclude_unset=True)
    return dict(settings) if isinstance(settings, dict) else None


def is_valid_name(name: str) -> bool:
    return re.fullmatch(NAME_PATTERN, name) is not None
