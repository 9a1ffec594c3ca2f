"""sftcast: predict which pre-trained checkpoint will be best after supervised fine-tuning.

The library is plain Python (no ZenML import anywhere in it): data, zoo, sft, evaluation,
proxies, comparator, registry. ZenML steps in `steps/` are thin adapters over it.
"""

__version__ = "0.1.0"
