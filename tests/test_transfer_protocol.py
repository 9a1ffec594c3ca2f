"""`compare --protocol transfer`: every method fitted on one table (past variants, labelled)
and judged on all of another's candidates (new variants), as the held-out zoo is judged; and
the study summary's `transfer` entry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.run import app
from sftcast.comparator import ComparatorInputError, check_table, compare_table, read_table
from sftcast.comparator.config import Columns, ComparatorSettings, JudgementSettings
from sftcast.comparator.judge import evaluate_split
from sftcast.comparator.protocols import Split
from sftcast.study import StudyConfig
from sftcast.study.summary import judgement_markdown, summarize
from sftcast.study.targets import target_rows, truth_rows

COLUMNS = Columns(id_column="id", target="score", proxies=["p1", "loss", "noise"],
                  lower_is_better=["loss"])  # fmt: skip
LINEAR = ComparatorSettings(form="linear")


def zoo(n: int, prefix: str, seed: int) -> pd.DataFrame:
    """target = p1 + p2 (p2 given as a loss) with a little noise, one proxy of pure noise,
    3 checkpoints per variant."""
    rng = np.random.default_rng(seed)
    p1, p2, noise = rng.normal(size=(3, n))
    return pd.DataFrame({
        "id": [f"{prefix}{i}" for i in range(n)],
        "variant": [f"{prefix}v{i // 3}" for i in range(n)],
        "score": p1 + p2 + 0.3 * rng.normal(size=n),
        "p1": p1, "loss": -p2, "noise": noise,
    })  # fmt: skip


def tables(tmp_path: Path) -> tuple[Path, Path]:
    past, new = tmp_path / "past.csv", tmp_path / "new.csv"
    zoo(30, "old", 0).to_csv(past, index=False)
    zoo(18, "new", 1).to_csv(new, index=False)
    return past, new


def transfer(new: Path, past: Path, **settings) -> JudgementSettings:
    return JudgementSettings(protocol="transfer", train_table=past, comparator=LINEAR, **settings)


def test_transfer_is_one_split_fitted_on_the_other_table(tmp_path: Path) -> None:
    past, new = tables(tmp_path)
    report = compare_table(read_table(new), COLUMNS, transfer(new, past, groups="variant"))
    record = report.protocol
    assert (record.name, record.n_train, record.n_test, record.judged_splits) == (
        "transfer", 30, 18, 1
    )  # fmt: skip
    assert record.train_table == str(past) and len(record.train_sha256) == 64
    assert report.input.path == str(new)
    # the same as one split of the two tables stacked, held-out rows first
    stacked = pd.concat([read_table(new), read_table(past)], ignore_index=True)
    candidates = check_table(stacked, "id", "score", COLUMNS.proxies, ["loss"])
    split = Split("by hand", np.arange(18, 48), np.arange(18))
    by_hand, _ = evaluate_split(candidates, split, JudgementSettings(comparator=LINEAR))
    for method in ("ltc", "p1", "linear_tuned", "signed_mean"):
        found = report.methods[method].pairwise_accuracy_mean
        assert found == pytest.approx(by_hand[method]["pairwise_accuracy"])
    # the signal transfers, the noise does not; the interval is over the held-out variants
    ltc = report.methods["ltc"]
    assert ltc.pairwise_accuracy_mean > 0.8 > report.methods["noise"].pairwise_accuracy_mean
    assert ltc.pairwise_accuracy_ci_low < ltc.pairwise_accuracy_mean < ltc.pairwise_accuracy_ci_high


def test_transfer_refuses_what_it_cannot_judge(tmp_path: Path) -> None:
    past, new = tables(tmp_path)
    with pytest.raises(ComparatorInputError, match="needs a training table"):
        compare_table(read_table(new), COLUMNS, JudgementSettings(protocol="transfer"))
    with pytest.raises(ComparatorInputError, match="a training table needs that protocol"):
        compare_table(read_table(new), COLUMNS, JudgementSettings(train_table=past))
    # a candidate in both tables would be judged on what it was fitted on
    pd.concat([zoo(30, "old", 0), zoo(18, "old", 1).iloc[:3]]).assign(
        id=lambda d: [*(f"x{i}" for i in range(30)), "old0", "old1", "old2"]
    ).to_csv(tmp_path / "overlap.csv", index=False)
    overlap = tmp_path / "overlap.csv"
    with pytest.raises(ComparatorInputError, match=r"both hold candidate\(s\) 'old0', 'old1'"):
        compare_table(read_table(overlap), COLUMNS, transfer(overlap, past))
    # a bad cell of the training table is named by that file and line
    bad = zoo(30, "old", 0).astype({"p1": object})
    bad.loc[4, "p1"] = "n/a"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ComparatorInputError, match=r"bad\.csv: row 5 \(line 6\), column 'p1'"):
        compare_table(read_table(new), COLUMNS, transfer(new, tmp_path / "bad.csv"))


def test_compare_transfer_on_the_command_line(tmp_path: Path) -> None:
    past, new = tables(tmp_path)
    common = ["compare", "--table", str(new), "--id-column", "id", "--target", "score",
              "--proxies", "p1,loss,noise", "--lower-is-better", "loss"]  # fmt: skip
    out = tmp_path / "report.json"
    result = CliRunner().invoke(
        app, [*common, "--protocol", "transfer", "--train-table", str(past), "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["protocol"]["name"] == "transfer"
    result = CliRunner().invoke(
        app, [*common, "--protocol", "transfer", "--train-table", str(past), "--splits", "5"]
    )
    assert result.exit_code == 2
    assert "--protocol transfer judges one split: --splits would be ignored" in result.output


def test_a_held_out_zoo_summary_is_judged_by_transfer_too(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)

    def study_table(n: int, prefix: str) -> pd.DataFrame:
        quality = rng.normal(size=n)
        return pd.DataFrame({
            "candidate": [f"zoo:{prefix}{i // 3}@{50 * (i % 3 + 1)}" for i in range(n)],
            "variant": [f"{prefix}{i // 3}" for i in range(n)],
            "family": ["objective-lr" if i < n // 2 else "mixture" for i in range(n)],
            "ppl_clm": np.exp(3 - 0.3 * quality + rng.normal(size=n)),
            "probe_loss_cls": 4 - quality + 0.5 * rng.normal(size=n),
            "kshot_cls": 0.5 if prefix == "old" else rng.normal(size=n),  # constant in one
            "sft_cls": 0.5 + 0.1 * quality + 0.02 * rng.normal(size=n),
        })  # fmt: skip

    past, new = tmp_path / "study.csv", tmp_path / "heldout.csv"
    study_table(30, "old").to_csv(past, index=False)
    study_table(18, "new").to_csv(new, index=False)
    study = StudyConfig(results=new, splits=2, jobs=1, freeze_commit="f" * 40, transfer_from=past)
    summary = summarize(new, study, ["cls"], tmp_path / "reports")
    found = summary["tasks"]["cls"]["transfer"]
    assert found["ltc"]["pairwise_accuracy_mean"] > 0.5
    assert "kshot_cls" not in found  # it cannot rank the training table
    assert found["paired"]["ppl_clm"]["splits"] == 1
    commands = [c for c in summary["tasks"]["cls"]["commands"] if "transfer" in c]
    assert commands and all(c[c.index("--train-table") + 1] == str(past) for c in commands)
    assert "--splits" not in commands[0]
    text = judgement_markdown(summary)
    assert "transfer (fitted on the study, judged here)" in text
    assert "Design frozen at `ffff" in text and "git could not tell" in text
    unfrozen = judgement_markdown({k: v for k, v in summary.items() if k != "freeze_commit"})
    assert "No design freeze is recorded for this table" in unfrozen and "are tuned" in unfrozen
    # the targets are checked under variant and transfer, and transfer shows its interval
    targets = text.split("## The comparator against issue #31's targets")[1].split("##")[0]
    assert "| cls | variant |" in targets and "| cls | transfer |" in targets
    ci = found["ltc"]
    shown = f"{ci['pairwise_accuracy_mean']:.2f} [{ci['pairwise_accuracy_ci_low']:.2f}, "
    assert shown in text


def test_the_targets_table_says_which_target_each_task_meets() -> None:
    def protocol(accuracy: float, wins: int, difference: float, recall: float) -> dict:
        paired = {"mean_difference": difference, "ltc_wins": wins, "splits": 20}
        ahead = {"mean_difference": 0.05, "ltc_wins": 20, "splits": 20}
        return {
            "ltc": {
                "pairwise_accuracy_mean": accuracy,
                "of_noise_ceiling": accuracy / 0.85,
                "within_noise_recall": recall,
            },
            "paired": {"ppl_clm": ahead, "linear": paired},
            "ridge": {"ltc_minus_mean": 0.01, "ltc_wins": 15, "paired_splits": 20},
            "paired_pretraining": {"ppl_clm": ahead, "ridge": paired},
        }

    summary = {
        "n_candidates": 42,
        "tasks": {
            "cls": {"variant": protocol(0.81, 14, 0.01, 0.85)},
            "rag": {"variant": protocol(0.7999, 13, 0.02, 0.5), "transfer": {"skipped": "x"}},
        },
    }
    rows = target_rows(summary)
    assert rows[2] == (
        "| cls | variant | 0.810: met | 0.953: met | linear +0.010, 14 of 20: met | 0.850: met "
        "| ridge +0.010, 14 of 20: met |"
    )
    # 0.7999 is below 0.80; 13 wins of 20 is below 70% though the mean difference is positive
    assert rows[3] == (
        "| rag | variant | 0.800: missed | 0.941: met | linear +0.020, 13 of 20: missed "
        "| 0.500: missed | ridge +0.020, 13 of 20: missed |"
    )
    assert len(rows) == 4  # a skipped protocol has no row


def test_the_truth_table_checks_seeds_and_ties_per_task() -> None:
    summary = {
        "tasks": {
            "cbqa": {"target_column": "sft_cbqa_mean", "seeds_min": 3, "modal_share": 0.15},
            "rag": {"target_column": "sft_rag", "seeds_min": 1, "modal_share": 0.51},
        }
    }
    assert truth_rows(summary)[2:] == [
        "| cbqa | `sft_cbqa_mean` | 3: met | 15.0%: met |",
        "| rag | `sft_rag` | 1: missed | 51.0%: missed |",
    ]
