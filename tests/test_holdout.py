"""Holdouts at export: deterministic, the right share, independent across campaigns, files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import validate_table
from features.files import OutputPathError, write_atomic, write_atomic_csv, write_atomic_table
from features.schema import CONTACTS
from models.holdout import assign_groups, export_with_holdout, unit_hash

IDS = [f"C{i:07d}" for i in range(1, 20_001)]


def test_same_campaign_same_split_in_any_order() -> None:
    first = assign_groups(IDS, "CMP-1", 0.15)
    again = assign_groups(IDS, "CMP-1", 0.15)
    assert (first == again).all()
    shuffled = np.random.default_rng(0).permutation(len(IDS))
    assert (assign_groups([IDS[i] for i in shuffled], "CMP-1", 0.15) == first[shuffled]).all()
    # a larger share only adds holdouts: nobody held out at 10% is treated at 15%
    smaller = assign_groups(IDS, "CMP-1", 0.10)
    assert ((smaller == "holdout") <= (first == "holdout")).all()


@pytest.mark.parametrize("share", [0.1, 0.2])
def test_realised_share_within_binomial_tolerance(share: float) -> None:
    groups = assign_groups(IDS, f"CMP-share-{share}", share)
    realised = (groups == "holdout").mean()
    sd = np.sqrt(share * (1 - share) / len(IDS))
    assert abs(realised - share) < 4 * sd
    assert set(groups) == {"treated", "holdout"}


def test_campaigns_split_independently() -> None:
    a = assign_groups(IDS, "CMP-A", 0.5) == "holdout"
    b = assign_groups(IDS, "CMP-B", 0.5) == "holdout"
    both = (a & b).mean()
    # independent halves overlap in a quarter of customers (binomial sd ~0.003 here)
    assert abs(both - 0.25) < 0.015
    assert abs(np.corrcoef(unit_hash("CMP-A", IDS), unit_hash("CMP-B", IDS))[0, 1]) < 0.03


def test_bad_share_is_refused() -> None:
    with pytest.raises(ValueError, match="holdout_share"):
        assign_groups(IDS[:3], "CMP", 1.0)


def test_export_writes_treated_list_and_contract_contacts(tmp_path: Path) -> None:
    members = pd.DataFrame(
        {"customer_id": IDS[:1000], "score": np.linspace(1, 0, 1000), "segment": "active"}
    )
    out = export_with_holdout(members, "CMP-7", 0.2, pd.Timestamp("2025-05-01"), tmp_path, "CP1")
    treated = pd.read_csv(out.treated_path, dtype={"customer_id": str})
    contacts = pd.read_csv(out.contacts_path, dtype=str)
    assert out.treated + out.holdout == 1000 and len(treated) == out.treated
    assert list(treated.columns) == ["customer_id", "score", "segment"]
    assert treated.score.is_monotonic_decreasing  # the ranking is kept
    held = set(contacts.customer_id[contacts.group == "holdout"])
    assert not held & set(treated.customer_id)
    assert len(held) == out.holdout
    clean, report = validate_table(CONTACTS, contacts, out.contacts_path)
    assert report.rows_rejected == 0 and len(clean) == 1000
    assert set(clean.coupon_id) == {"CP1"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "CMP-7_contacts.csv",
        "CMP-7_treated.csv",
    ]  # no temporary files left


def test_a_campaign_too_small_to_measure_says_so_before_it_is_sent() -> None:
    """A list of a handful splits into 0 or 1 held-out customers at 10%: `dangol measure`
    could never judge it, so the export's note says so; a big list has no such note."""
    from models.measure import MIN_GROUP
    from models.segments import CampaignPlan, SegmentSettings, unmeasurable_campaigns

    def members(n: int) -> pd.DataFrame:
        return pd.DataFrame({"customer_id": [f"C{i:05d}" for i in range(n)]})

    plan = CampaignPlan(pd.Timestamp("2026-01-01"), SegmentSettings())
    notes = unmeasurable_campaigns({"active": members(3), "vip_steady": members(400)}, plan)
    held = assign_groups(members(3)["customer_id"], plan.campaign_id("active"), 0.1) == "holdout"
    assert int(held.sum()) < MIN_GROUP
    assert set(notes) == {"active"}
    assert notes["active"] == (
        f"its campaign splits into {3 - held.sum()} treated and {held.sum()} held out: too few "
        f"to measure (at least {MIN_GROUP} in each)"
    )
    no_holdout = SegmentSettings.model_validate({"holdout": {"share": 0.0}})
    assert (
        unmeasurable_campaigns({"active": members(3)}, CampaignPlan(plan.cutoff, no_holdout)) == {}
    )


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_exported_files_get_the_umask_mode_not_0600(tmp_path: Path, umask: int, mode: int) -> None:
    """The lists go to marketing and other services: a staging file made by mkstemp would
    keep its 0600 after the rename."""
    members = pd.DataFrame({"customer_id": [f"C{i}" for i in range(50)], "score": 0.5})
    previous = os.umask(umask)
    try:
        written = export_with_holdout(
            members, "CMP-mode", 0.2, pd.Timestamp("2025-06-01"), tmp_path / "out"
        )
        campaigns = write_atomic_csv(members, tmp_path / "out" / "campaigns.csv")
    finally:
        os.umask(previous)
    for path in (written.treated_path, written.contacts_path, campaigns):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path.name
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "CMP-mode_contacts.csv",
        "CMP-mode_treated.csv",
        "campaigns.csv",
    ]


def test_a_bad_output_path_is_named_and_leaves_nothing(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1, 2]})
    (tmp_path / "folder").mkdir()
    (tmp_path / "plain.csv").write_text("x\n")
    with pytest.raises(OutputPathError, match="is a folder"):
        write_atomic_csv(frame, tmp_path / "folder")
    with pytest.raises(OutputPathError, match="plain.csv is a file, not a folder"):
        write_atomic_csv(frame, tmp_path / "plain.csv" / "x.csv")
    with pytest.raises(OutputPathError, match=r"\.csv or \.parquet"):
        write_atomic_table(frame, tmp_path / "table.txt")
    # a writer that fails half-way leaves neither the file nor its staging copy

    def fail(staging: Path) -> None:
        staging.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(tmp_path / "half.csv", fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "plain.csv"]
    assert list((tmp_path / "folder").iterdir()) == []
