"""The project's ZenML client logged in to (or out of) the services' ZenML server, and the
MLflow credentials kept there as the secret the stacks read (`{{sftcast_mlflow.password}}` in
zenml_stack/server.yaml)."""

from __future__ import annotations

from deploy.services.config import USERNAME
from deploy.services.supervisor import Services

MLFLOW_SECRET = "sftcast_mlflow"


def login_zenml(services: Services) -> None:
    """Point this project's ZenML client at the services' ZenML server (as `zenml login`
    would), and keep the MLflow credentials there as the secret the stacks read."""
    from zenml.client import Client
    from zenml.config.global_config import GlobalConfiguration
    from zenml.zen_stores.rest_zen_store import RestZenStoreConfiguration

    credentials = services.credentials
    store = RestZenStoreConfiguration(
        url=services.url("zenml"), username=USERNAME, password=credentials.zenml_password
    )
    GlobalConfiguration().set_store(store)
    client = Client()
    values = {"username": USERNAME, "password": credentials.mlflow_password}
    if client.list_secrets(name=MLFLOW_SECRET).items:
        client.update_secret(MLFLOW_SECRET, add_or_update_values=values)
    else:
        client.create_secret(MLFLOW_SECRET, values=values)


def logout_zenml(services: Services) -> bool:
    """Back to the embedded ZenML store, if the client was logged in to these services."""
    from zenml.config.global_config import GlobalConfiguration

    config = GlobalConfiguration()
    if config.store_configuration.url != services.url("zenml"):
        return False
    config.set_default_store()
    return True
