"""What the zoo knows of a candidate it made: the variant behind a `zoo:` URI."""

from __future__ import annotations

from typing import Any

from sftcast.zoo.config import ZooConfig
from sftcast.zoo.fetch import parse_zoo_uri


def variant_info(uri: str, zoo: ZooConfig) -> dict[str, Any]:
    """What the zoo knows of a `zoo:` candidate (nothing for a Hub model)."""
    if not uri.startswith("zoo:"):
        return {}
    name, checkpoint = parse_zoo_uri(uri)
    variant = zoo.variant(name)
    return {
        "variant": name,
        "family": variant.family,
        "objective": variant.objective,
        "checkpoint_step": checkpoint,
        "variant_config": variant.model_dump(mode="json"),
    }
