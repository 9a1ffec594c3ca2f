"""What the benchmarks report from a run: step times by stage, and a study table against the
committed one."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from benchmarks import make_run, study_run


def test_steps_are_summed_by_the_first_stage_prefix_they_match() -> None:
    steps = {"pretrain_a": 10.0, "pretrain_b": 5.0, "measure_x": 2.5, "sft_report": 1.0, "z": 4}
    prefixes = {"pretrain_": "zoo", "measure_": "measured", "sft_report": "report", "sft_": "sft"}
    assert make_run.stage_rows(steps, prefixes) == [
        "| zoo | 2 | 15 |", "| measured | 1 | 2 |", "| report | 1 | 1 |", "| other | 1 | 4 |",
    ]  # fmt: skip


def test_a_study_table_is_compared_cell_by_cell_with_the_committed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    committed = pd.DataFrame({
        "candidate": ["zoo:a@1", "zoo:b@1", "zoo:gone@1"], "ppl_clm": [10.0, 12.0, 9.0],
        "sft_cbqa": [0.25, 0.5, 0.1], "seconds_base": [1.0, 2.0, 3.0],
    })  # fmt: skip
    committed.to_csv(tmp_path / "results.csv", index=False)
    monkeypatch.setattr(study_run, "COMMITTED", tmp_path / "results.csv")
    new = committed.iloc[:2].copy()
    new["sft_cbqa"] = [0.25, 0.45]  # one score moved by 0.05
    new["seconds_base"] = [7.0, 7.0]  # costs are not compared
    lines = study_run.table_comparison(new)
    assert "3 candidates, 2 in both" in lines[0]
    assert "| post-SFT scores (1) | 1 of 2 | 0.05 |" in lines
    assert "| proxies (1) | 2 of 2 | 0 |" in lines
