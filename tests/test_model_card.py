"""The card a fine-tuned version is logged with: the candidate's own, the fine-tune on top, and
a license (the card's, else `unknown`), so MLflow neither asks the Hub nor warns."""

from __future__ import annotations

from pathlib import Path

from sftcast.registry import model_card


def test_a_zoo_card_gets_the_fine_tune_and_an_unknown_license(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# clm-lr4e-3 @ 150\n\nPre-trained here.\n")
    card = model_card(tmp_path / "README.md", "zoo:clm-lr4e-3@150 fine-tuned on cls")
    assert card.data.license == "unknown"
    assert card.text.strip().startswith("zoo:clm-lr4e-3@150 fine-tuned on cls")
    assert "Pre-trained here." in card.text


def test_a_hub_card_keeps_its_license_and_metadata(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("---\nlicense: mit\ntags: [llama]\n---\n# a model\n")
    card = model_card(tmp_path / "README.md", "fine-tuned")
    assert card.data.license == "mit" and card.data.tags == ["llama"]
    assert "# a model" in card.text


def test_no_card_at_all(tmp_path: Path) -> None:
    card = model_card(tmp_path / "absent.md", "fine-tuned")
    assert card.data.license == "unknown" and "fine-tuned" in card.text
