"""Promotion: the `production` alias of a task's registered model, moved with its evidence.

MLflow 3 has no stages; the model that serves a task is the version holding the `production`
alias. Promoting records why on the new version (tags) before the alias moves, so a crash
leaves `production` where it was. Rollback goes back one holder at a time, from a history kept
as a registered-model tag: `sftcast.production_history`, a JSON list of versions in promotion
order whose last entry is the current holder. A tag rather than reconstruction from version
tags, because a version can be promoted, rolled back and promoted again: its tags only hold its
latest event, while the list holds the whole chain.

The history is read against the alias (see `_chain`), so it heals itself: entries written by a
promotion that crashed before the alias moved are ignored, and an alias moved by hand is
appended. Promotions of one model are expected one at a time (one pipeline run per task);
MLflow offers no compare-and-set to guard the history against two at once.

Only the tags named here, the history tag and the `production` alias are ever written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import mlflow
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException

from sftcast.registry import PRETRAINED, TAG_STAGE
from sftcast.tracking import safe_tags

PRODUCTION = "production"
TAG_HISTORY = "sftcast.production_history"
TAG_PROMOTED_FROM = "sftcast.promoted_from"
TAG_EVIDENCE = "sftcast.promotion.evidence"
TAG_PREDICTOR = "sftcast.promotion.predictor"
TAG_PIPELINE_RUN_ID = "sftcast.promotion.pipeline_run_id"
TAG_TIME = "sftcast.promotion.time"
TAG_ROLLED_BACK_FROM = "sftcast.rolled_back_from"


class PromotionError(RuntimeError):
    """Promotion or rollback did not happen; the message says why. Nothing was changed."""


class PromotionRefused(PromotionError):
    """The evidence does not justify promoting (and `force` was not given)."""


class RollbackError(PromotionError):
    """There is no earlier production version to go back to."""


@dataclass(frozen=True)
class PromotionResult:
    name: str
    version: str
    previous: str | None
    changed: bool

    @property
    def summary(self) -> str:
        """One line for people: `production: sftcast-cls v3 -> v2`."""
        if not self.changed:
            return f"production: {self.name} already at v{self.version}; nothing changed"
        before = f"v{self.previous}" if self.previous else "none"
        return f"production: {self.name} {before} -> v{self.version}"


def production_version(name: str) -> ModelVersion | None:
    """The version holding `production`, or None; raises if the registered model is unknown."""
    client = mlflow.MlflowClient()
    holder = _holder(client.get_registered_model(name))
    return client.get_model_version(name, holder) if holder else None


def _holder(model: RegisteredModel) -> str | None:
    # The SQL store gives alias versions as ints, the REST client as strings.
    holder = model.aliases.get(PRODUCTION)
    return None if holder is None else str(holder)


def promote(
    name: str,
    version: str | int,
    *,
    evidence: Mapping[str, Any],
    pipeline_run_id: str,
    predictor: str,
    force: bool = False,
    beats_chance: bool = True,
) -> PromotionResult:
    """Move `production` to `version`, after recording on it what justified the move.

    `beats_chance`: whether any predictor beat chance on held-out candidates; without it the
    promotion is refused unless `force`, and a forced promotion says so in its evidence.
    """
    version = str(version)
    # Refuse before anything else: a gate on the evidence holds whatever the target.
    if not beats_chance and not force:
        raise PromotionRefused(
            f"not promoting {name} v{version}: no predictor beat chance on held-out "
            "candidates, so the choice is no better than a random one (force to override)"
        )
    client = mlflow.MlflowClient()
    target = client.get_model_version(name, version)  # fails here, before any write, if unknown
    if target.tags.get(TAG_STAGE) == PRETRAINED:
        raise PromotionRefused(
            f"not promoting {name} v{version}: it is a pre-trained checkpoint (a `watch` "
            "challenger), not a fine-tuned model; fine-tune it first"
        )
    model = client.get_registered_model(name)
    current = _holder(model)
    if current == version:
        return PromotionResult(name, version, current, changed=False)
    chain = _chain(model.tags.get(TAG_HISTORY), current)
    # Flags first, so they survive truncation of a long evidence.
    forced = force and not beats_chance
    record = {"forced": forced, "beats_chance": beats_chance, "evidence": evidence}
    tags = {
        TAG_PROMOTED_FROM: current or "none",
        TAG_EVIDENCE: json.dumps(record, default=str),
        TAG_PREDICTOR: predictor,
        TAG_PIPELINE_RUN_ID: pipeline_run_id,
        TAG_TIME: datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for key, value in safe_tags(tags).items():
        client.set_model_version_tag(name, version, key, value)
    # The history before the alias: if the alias move fails, `_chain` drops this entry.
    client.set_registered_model_tag(name, TAG_HISTORY, json.dumps([*chain, version]))
    # Last, and one call: the SQL store sets an alias in a single transaction (one row merge),
    # so `production` is either the old version or the new one, never missing.
    client.set_registered_model_alias(name, PRODUCTION, version)
    return PromotionResult(name, version, current, changed=True)


def rollback(name: str) -> PromotionResult:
    """Move `production` back to the version that held it before the current one."""
    client = mlflow.MlflowClient()
    try:
        model = client.get_registered_model(name)
    except MlflowException as err:
        raise RollbackError(f"cannot roll back {name}: {err.message}") from err
    current = _holder(model)
    if current is None:
        raise RollbackError(f"cannot roll back {name}: no version holds the {PRODUCTION!r} alias")
    chain = _chain(model.tags.get(TAG_HISTORY), current)
    if len(chain) < 2:
        raise RollbackError(
            f"cannot roll back {name}: v{current} is the first {PRODUCTION} version on record, "
            "there is no earlier one"
        )
    target = chain[-2]
    client.set_model_version_tag(name, target, TAG_ROLLED_BACK_FROM, current)
    client.set_registered_model_alias(name, PRODUCTION, target)
    # The pop after the alias move: if it fails, `_chain` cuts the history at `target` anyway.
    client.set_registered_model_tag(name, TAG_HISTORY, json.dumps(chain[:-1]))
    return PromotionResult(name, target, current, changed=True)


def _chain(history: str | None, current: str | None) -> list[str]:
    """The recorded history up to the current holder, its last entry.

    Entries after the holder's last occurrence come from a promotion that failed before moving
    the alias; a holder missing from the history had the alias set by other means. With no
    holder (the alias was deleted by hand) the chain starts afresh.
    """
    if current is None:
        return []
    versions = [str(v) for v in json.loads(history)] if history else []
    if current not in versions:
        return [*versions, current]
    return versions[: len(versions) - versions[::-1].index(current)]
