"""Evaluation settings: `parameters.evaluation` of a run configuration.

Unknown keys are errors, so a typo in YAML names itself instead of being ignored.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sftcast.data.schema import SplitName, TaskName
from sftcast.evaluation.scoring import GenerationMethod
from sftcast.prompts import FORMATS, PromptFormat


class EvaluationConfig(BaseModel):
    """How base and fine-tuned models are scored."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    split: SplitName = "test"
    max_examples: int | None = Field(None, ge=1, description="first N rows of the split")
    shots: dict[TaskName, Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: {"cbqa": 3, "rag": 1, "cls": 2}
    )
    demo_context_tokens: int = Field(48, ge=1, description="input tokens kept per demonstration")
    max_new_tokens: int = Field(12, ge=1)
    max_length: int = Field(256, ge=8)
    batch_size: int = Field(32, ge=1)
    # how answers are decoded: `loop` (KV cache, stops at the answer's end) or `generate`
    # (transformers' generate, the path before it; the same answers, kept to benchmark against)
    generation: GenerationMethod = "loop"
    # few-shot prompts: run the demonstrations every prompt begins with once, not per row
    # (`sftcast.evaluation.scoring.shared_prefix`); false runs each prompt whole, the path
    # before it, kept to benchmark against: the same scores up to float rounding
    share_prefix: bool = True
    # QA tasks scored by multiple choice: the gold answer against `n - 1` distractors of its
    # relation, ranked by the model's probability of each (`sftcast.evaluation.choice`); their
    # headline score is that accuracy instead of generated-answer F1
    choices: dict[TaskName, Annotated[int, Field(ge=2)]] = Field(default_factory=dict)
    formats: list[PromptFormat] = Field(default_factory=lambda: list(FORMATS))
    # score a fine-tuned model on the tasks it was not trained on too (few-shot), for MRC
    forgetting: bool = True
    seed: int = 0  # which train rows become demonstrations

    def identity(self) -> dict[str, object]:
        """The settings the scores depend on, for hashes that name a measurement: how answers
        are decoded and whether the demonstrations are run once are left out (both ways give
        the same answers), and so are `choices` when none is set (the hash of a table measured
        before the setting existed)."""
        return self.model_dump(
            mode="json",
            exclude={"generation", "share_prefix"} | (set() if self.choices else {"choices"}),
        )

    @field_validator("formats")
    @classmethod
    def _with_train(cls, formats: list[PromptFormat]) -> list[PromptFormat]:
        if "train" not in formats:  # the format the models are fine-tuned in
            raise ValueError(f"formats must include 'train', got {formats}")
        return formats
