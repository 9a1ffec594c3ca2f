"""No secret reaches MLflow: what `tag_value` (the one way sftcast writes params and tags)
redacts, and what it leaves alone."""

from __future__ import annotations

import pytest

from sftcast.tracking import REDACTED, redact, safe_tags, secret_values

ENV = {
    "HF_TOKEN": "hf_abcdefghijklmnopqrstuvwxyz0123",
    "MLFLOW_TRACKING_PASSWORD": "correct-horse",
    "DB_PASSWORD": "short",  # under the minimum length: redacting it would shred every text
    "HOME": "/root",  # not a secret name
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("token=hf_abcdefghijklmnopqrstuvwxyz0123", f"token={REDACTED}"),
        ("https://u:correct-horse@mlflow.example.com", f"https://u:{REDACTED}@mlflow.example.com"),
        ("a hf_ZYXWVUTSRQPONMLKJIHGFEDCBA token not in env", f"a {REDACTED} token not in env"),
        ("aws AKIAIOSFODNN7EXAMPLE here", f"aws {REDACTED} here"),
        ("Authorization: Bearer abcdefghijklmnop1234", f"Authorization: {REDACTED}"),
        ("a short password stays", "a short password stays"),
        ("/root/artifacts/zoo", "/root/artifacts/zoo"),
        ("zoo:clm-lr4e-3@150", "zoo:clm-lr4e-3@150"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text, ENV) == expected


def test_secret_values_come_from_secret_names_only() -> None:
    assert secret_values(ENV) == ["hf_abcdefghijklmnopqrstuvwxyz0123", "correct-horse"]


def test_safe_tags_redact_nested_values_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SFTCAST_TEST_API_KEY", "sk-live-0123456789")
    tags = safe_tags(
        {"sftcast.sft_config": {"output_dir": "/data/sk-live-0123456789/sft"}, "seed": 3}
    )
    assert tags == {"sftcast.sft_config": f'{{"output_dir": "/data/{REDACTED}/sft"}}', "seed": "3"}
