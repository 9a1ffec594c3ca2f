"""Supervised fine-tuning of candidates (full or LoRA), one candidate x task at a time."""

from sftcast.sft.config import LoraSettings, SFTConfig
from sftcast.sft.train import SFTDivergedError, SFTResult, finetune

__all__ = ["LoraSettings", "SFTConfig", "SFTDivergedError", "SFTResult", "finetune"]
