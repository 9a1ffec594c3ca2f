"""The process environment a command runs in, set once before any command's work (the app's
callback calls `prepare`): ZenML, torch, the Hub and MLflow read these when first imported,
and every one of them is imported later, inside the commands. A variable already exported
wins over each default here."""

from __future__ import annotations

import logging
import os
import sys

from deploy.guards import DEFAULT_ZENML_CONFIG
from deploy.stacks import REPO_ROOT

_prepared = False


def prepare() -> None:
    """Set the defaults below (once per process) and quiet two loggers."""
    global _prepared
    if _prepared:
        return
    _prepared = True
    defaults = {
        # a project-local ZenML config (export ZENML_CONFIG_PATH for your own), no analytics
        "ZENML_CONFIG_PATH": str(DEFAULT_ZENML_CONFIG),
        "ZENML_ANALYTICS_OPT_IN": "false",
        # steps resolve relative to the project even where the ZenML repository lives elsewhere
        "ZENML_CUSTOM_SOURCE_ROOT": str(REPO_ROOT),
        "ZENML_LOGGING_VERBOSITY": "WARN",
        "TOKENIZERS_PARALLELISM": "false",
        # ZenML 0.98's bounded step-run cache evicts inputs it counted on (docs/experiments.md,
        # "the whole study in one command"): off
        "ZENML_PREVENT_EXECUTION_CONTEXT_CACHING": "true",
    }
    if "OMP_WAIT_POLICY" not in os.environ:
        # libgomp's threads spin briefly, then sleep: alone on the cores 1.8-2.3x faster than
        # sleeping at once (docs/experiments.md, "how OpenMP threads wait")
        defaults["GOMP_SPINCOUNT"] = "10000"
    if os.environ.get("NO_COLOR") or not (sys.stdout and sys.stdout.isatty()):
        defaults["ZENML_LOGGING_COLORS_DISABLED"] = "true"  # rich colours a terminal only
    if not (sys.stderr and sys.stderr.isatty()):  # progress bars are noise in a log file
        defaults["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        defaults["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    for name, value in defaults.items():
        os.environ.setdefault(name, value)
    _quiet_loggers()


def _quiet_loggers() -> None:
    # ZenML's MLflow tracker warns at every step about fastai's autologging (never installed)
    logging.getLogger(
        "zenml.integrations.mlflow.experiment_trackers.mlflow_experiment_tracker"
    ).addFilter(lambda record: "Failed to disable MLflow autologging" not in record.getMessage())
    # MLflow checks each comparator's input example against its signature, at INFO
    logging.getLogger("mlflow.pyfunc").setLevel(logging.WARNING)
