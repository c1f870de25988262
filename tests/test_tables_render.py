"""Rendering our results beside the paper's (mutdet_core/tables/render.py)."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from mutdet_core.tables import RESULT_COLUMNS, get_layout, load_paper_table, render_small_scale_table5, render_table
from mutdet_core.tables.vocabulary import CELL_FIELDS


def fake_results(n: int, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Our results for every cell of Table ``n``: the paper's value + ``shift`` + per-cell noise."""
    paper = load_paper_table(n)
    rng = np.random.default_rng(seed)
    return paper[list(CELL_FIELDS)].assign(value=paper["value"] + shift + rng.normal(0, 0.5, len(paper)))


def parse_pipe_table(markdown: str) -> list[list[str]]:
    """The cells of the first pipe table in ``markdown`` (header first, alignment row dropped)."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    rows = [[c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])] for line in lines]
    assert all(set(c) <= set(":-") for c in rows[1]), rows[1]
    return [rows[0]] + rows[2:]


@pytest.mark.parametrize("n", range(1, 10))
def test_complete_results_give_ours_minus_paper(n, tmp_path):
    ours = fake_results(n, shift=0.3, seed=n)
    tidy = render_table(n, ours, tmp_path / "t.md", tmp_path / "t.csv")
    paper = load_paper_table(n)
    assert len(tidy) == len(paper) and (tidy["n"] == 1).all()
    np.testing.assert_allclose(tidy["ours"], ours["value"])
    np.testing.assert_allclose(tidy["diff"], ours["value"] - paper["value"])
    written = pd.read_csv(tmp_path / "t.csv")
    np.testing.assert_allclose(written["diff"], tidy["diff"], atol=1e-4)
    assert {"paper", "ours", "diff"} <= set(written.columns)

    layout = get_layout(n)
    table = parse_pipe_table((tmp_path / "t.md").read_text(encoding="utf-8"))
    width = 1 + len(layout.descriptor_headers) + 1 + len(layout.columns)
    assert all(len(r) == width for r in table)
    assert len(table) == 1 + 3 * len(layout.rows)
    assert table[0][-len(layout.columns):] == [c.label for c in layout.columns]
    # The Δ line of the first row holds the signed differences with the paper's decimals.
    d = layout.decimals
    first = tidy[tidy["row_index"] == 1]
    assert table[3][-len(layout.columns):] == [f"{x:+.{d}f}" for x in first["diff"]]
    assert table[1][0] == layout.rows[0].label and table[1][len(layout.descriptor_headers) + 1] == "paper"


def test_partial_results_show_dashes(tmp_path):
    ours = fake_results(5)
    ours = ours[~((ours["pretrain_method"] == "mutdet") & (ours["fraction"] < 0.5))]  # 4 cells not run
    tidy = render_table(5, ours, tmp_path / "t5.md", tmp_path / "t5.csv")
    assert tidy["ours"].isna().sum() == 4 and tidy["diff"].isna().sum() == 4
    md = (tmp_path / "t5.md").read_text(encoding="utf-8")
    table = parse_pipe_table(md)
    ours_line = table[1 + 3 * 4 + 1]  # MutDet's 'ours' line
    assert ours_line[1] == "ours"
    assert ours_line[2:] == ["—", "—"] + ours_line[4:6] + ["—", "—"] + ours_line[8:]
    assert all(c != "—" for c in ours_line[4:6] + ours_line[8:])
    assert "36 of 40 cells have results" in md


def test_no_results_at_all(tmp_path):
    tidy = render_table(7, None, tmp_path / "t7.md", tmp_path / "t7.csv")
    assert tidy["ours"].isna().all() and (tidy["n"] == 0).all()
    table = parse_pipe_table((tmp_path / "t7.md").read_text(encoding="utf-8"))
    assert table[0][1:6] == ["Contrastive Loss", "Enhanced Embedding", "Enhanced Feature", "Encoder Loss",
                             "Siamase Head"]
    assert table[1 + 3 * 5][:6] == ["#6", "?", "?", "?", "?", "?"]  # the unresolved row
    assert table[1 + 3 * 7][:6] == ["#8", "✓", "✓", "✓", "✓", "✓"]


def test_gains_over_the_reference_row_are_shown_for_paper_and_ours(tmp_path):
    ours = fake_results(6, shift=1.0)
    tidy = render_table(6, ours, tmp_path / "t6.md", tmp_path / "t6.csv")
    table = parse_pipe_table((tmp_path / "t6.md").read_text(encoding="utf-8"))
    mutdet = tidy[tidy["row_index"] == 5]
    baseline = tidy[tidy["row_index"] == 1]
    gain = mutdet["ours"].to_numpy() - baseline["ours"].to_numpy()
    np.testing.assert_allclose(mutdet["ours_delta"], gain)
    assert table[13][2] == "66.9 (+11.5)"  # the paper's line, as printed
    assert table[14][2] == f"{mutdet['ours'].iloc[0]:.1f} ({gain[0]:+.1f})"
    assert baseline["ours_delta"].isna().all()


def test_repeated_seeds_are_averaged_with_spread(tmp_path):
    runs = [fake_results(9, seed=s).assign(seed=s) for s in range(3)]
    ours = pd.concat(runs, ignore_index=True)
    tidy = render_table(9, ours, tmp_path / "t9.md", tmp_path / "t9.csv")
    values = np.stack([r["value"].to_numpy() for r in runs])
    np.testing.assert_allclose(tidy["ours"], values.mean(0))
    np.testing.assert_allclose(tidy["ours_std"], values.std(0, ddof=1))
    assert (tidy["n"] == 3).all()
    table = parse_pipe_table((tmp_path / "t9.md").read_text(encoding="utf-8"))
    assert "±" in table[2][2]


def test_fraction_units_and_cell_style(tmp_path):
    ours = fake_results(1)
    frac = ours.assign(value=ours["value"] / 100)
    tidy = render_table(1, frac, tmp_path / "t1.md", tmp_path / "t1.csv", unit="fraction", style="cell")
    np.testing.assert_allclose(tidy["ours"], ours["value"])
    table = parse_pipe_table((tmp_path / "t1.md").read_text(encoding="utf-8"))
    assert table[0] == ["Calibration Mechanism", "Encoder", "Decoder", "AP50", "AP75"]
    assert len(table) == 5
    r = tidy.iloc[0]
    assert table[1][3] == f"{r['ours']:.1f} / 69.4 ({r['diff']:+.1f})"


def test_results_for_other_tables_are_ignored(tmp_path):
    ours = pd.concat([fake_results(3), fake_results(9)], ignore_index=True)
    tidy = render_table(3, ours, tmp_path / "t3.md", tmp_path / "t3.csv")
    assert tidy["ours"].notna().all()


@pytest.mark.parametrize("mutate,error", [
    (lambda f: f.drop(columns="eval_epoch"), "missing columns \\['eval_epoch'\\]"),
    (lambda f: f.assign(finetune_dataset="dior-r"), "finetune_dataset values \\['dior-r'\\]"),
    (lambda f: f.assign(fraction=10), "fraction values \\[10\\].*write 0.1 for 10 %"),
    (lambda f: f.assign(value="n/a"), "non-numeric"),
    (lambda f: f.assign(pretrain_method="mutdet_cl_ee_ef_el_sh"), "spell it 'mutdet'"),
    (lambda f: f.assign(eval_epoch=50), "eval_epoch values \\[50\\]"),
])
def test_bad_results_are_rejected_before_writing(mutate, error, tmp_path):
    with pytest.raises(ValueError, match=error):
        render_table(2, mutate(fake_results(2)), tmp_path / "t.md", tmp_path / "t.csv")
    assert not (tmp_path / "t.md").exists()


def test_unit_and_style_are_checked(tmp_path):
    with pytest.raises(ValueError, match="unit"):
        render_table(1, fake_results(1), tmp_path / "a.md", tmp_path / "a.csv", unit="percentage")
    with pytest.raises(ValueError, match="style"):
        render_table(1, fake_results(1), tmp_path / "a.md", tmp_path / "a.csv", style="wide")


# ------------------------------------------------------------------------------ small-scale Table 5

def small_scale_results() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for method, base in (("mutdet", 30.0), ("none", 20.0), ("detreg", 25.0)):
        for fraction in (0.25, 0.5, 1.0):
            for seed in range(3):
                for metric, scale in (("AP50", 1.0), ("AP75", 0.5)):
                    rows.append(dict(pretrain_method=method, fraction=fraction, metric=metric, seed=seed,
                                     finetune_dataset="synthetic", eval_epoch=4,
                                     value=scale * (base + 10 * fraction) + rng.normal(0, 1)))
    return pd.DataFrame(rows)


def test_small_scale_table5_layout_and_statistics(tmp_path):
    ours = small_scale_results()
    tidy = render_small_scale_table5(ours, tmp_path / "s.md", tmp_path / "s.csv")
    assert list(dict.fromkeys(tidy["method"])) == ["none", "detreg", "mutdet"]  # the paper's row order
    assert len(tidy) == 3 * 3 * 2 and (tidy["n"] == 3).all()
    sel = ours[(ours["pretrain_method"] == "mutdet") & (ours["fraction"] == 0.5) & (ours["metric"] == "AP75")]
    row = tidy[(tidy["method"] == "mutdet") & (tidy["fraction"] == 0.5) & (tidy["metric"] == "AP75")].iloc[0]
    assert math.isclose(row["mean"], sel["value"].mean()) and math.isclose(row["std"], sel["value"].std(ddof=1))
    none = tidy[(tidy["method"] == "none") & (tidy["fraction"] == 0.5) & (tidy["metric"] == "AP75")].iloc[0]
    assert math.isclose(row["delta_vs_none"], row["mean"] - none["mean"])
    table = parse_pipe_table((tmp_path / "s.md").read_text(encoding="utf-8"))
    assert table[0] == ["Method", "AP50 / 25%", "AP50 / 50%", "AP50 / 100%", "AP75 / 25%", "AP75 / 50%",
                        "AP75 / 100%"]
    assert [r[0] for r in table[1:]] == ["-", "DETReg", "MutDet"]
    assert table[3][5] == f"{row['mean']:.1f}±{row['std']:.1f} ({row['delta_vs_none']:+.1f})"
    assert pd.read_csv(tmp_path / "s.csv").shape == (18, 7)


def test_small_scale_missing_cell_and_single_seed(tmp_path):
    ours = small_scale_results()
    ours = ours[(ours["seed"] == 0) & ~((ours["pretrain_method"] == "detreg") & (ours["fraction"] == 1.0))]
    render_small_scale_table5(ours.drop(columns="seed"), tmp_path / "s.md", tmp_path / "s.csv")
    table = parse_pipe_table((tmp_path / "s.md").read_text(encoding="utf-8"))
    assert table[2][3] == "—" and table[2][6] == "—"
    assert "±" not in "".join(sum(table[1:], []))


def test_small_scale_rejects_mixed_settings(tmp_path):
    ours = small_scale_results()
    ours.loc[0, "eval_epoch"] = 8
    with pytest.raises(ValueError, match="mixes settings in \\['eval_epoch'\\]"):
        render_small_scale_table5(ours, tmp_path / "s.md", tmp_path / "s.csv")
    with pytest.raises(ValueError, match="missing columns \\['fraction'\\]"):
        render_small_scale_table5(ours.drop(columns="fraction"), tmp_path / "s.md", tmp_path / "s.csv")


def test_result_columns_are_the_cell_keys_and_value():
    assert RESULT_COLUMNS == CELL_FIELDS + ("value",)


def test_small_scale_oracle_rows_note_and_per_seed_csv(tmp_path):
    from mutdet_core.tables import per_seed_results

    ours = small_scale_results()
    oracle = ours[ours["pretrain_method"] == "mutdet"].assign(pretrain_method="mutdet.synthetic_oracle")
    ours = pd.concat([ours, oracle], ignore_index=True)
    render_small_scale_table5(ours, tmp_path / "s.md", tmp_path / "s.csv", note="One seed:\n  read with care.")
    text = (tmp_path / "s.md").read_text(encoding="utf-8")
    assert text.rstrip().endswith("One seed: read with care.")
    assert [r[0] for r in parse_pipe_table(text)[1:]] == ["-", "DETReg", "MutDet", "MutDet (synthetic_oracle)"]
    seeds = per_seed_results(ours)
    assert list(seeds.columns) == ["method", "init", "fraction", "seed", "AP50", "AP75"]
    assert len(seeds) == 4 * 3 * 3
    row = seeds[(seeds["init"] == "mutdet.synthetic_oracle") & (seeds["fraction"] == 0.5) & (seeds["seed"] == 2)]
    expected = ours[(ours["pretrain_method"] == "mutdet.synthetic_oracle") & (ours["fraction"] == 0.5)
                    & (ours["seed"] == 2) & (ours["metric"] == "AP75")]["value"].iloc[0]
    assert row["method"].iloc[0] == "MutDet (synthetic_oracle)" and math.isclose(row["AP75"].iloc[0], expected)
