"""The tracking services sftcast starts for itself, on 127.0.0.1 only: PostgreSQL, an MLflow
server on it and a ZenML server (`config`: what they are; `supervisor`: starting and
stopping them; `zenml_login`: the project's ZenML client on that server)."""

from deploy.services.config import (
    ENGINE,
    SERVICES,
    USERNAME,
    Credentials,
    ServiceError,
    ServicesConfig,
    ServiceState,
    load_services_config,
)  # fmt: skip
from deploy.services.supervisor import Services
from deploy.services.zenml_login import MLFLOW_SECRET, login_zenml, logout_zenml

__all__ = [
    "ENGINE", "MLFLOW_SECRET", "SERVICES", "USERNAME", "Credentials", "ServiceError",
    "ServiceState", "Services", "ServicesConfig", "load_services_config", "login_zenml",
    "logout_zenml",
]  # fmt: skip
