"""The campaign tables of the contract: contacts and campaigns, validated like the others."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from features.contract import ContractError
from features.loaders import DataSettings, load_tables

CUSTOMERS = pd.DataFrame(
    {"customer_id": ["c1", "c2", "c3", "c4"], "signed_up_at": ["2024-01-01"] * 4}
)
ORDERS = pd.DataFrame(
    {
        "order_id": ["o1", "o2"],
        "customer_id": ["c1", "c2"],
        "ordered_at": ["2024-03-01", "2024-03-05"],
        "amount": [1000.0, 2000.0],
    }
)
CAMPAIGNS = pd.DataFrame(
    {
        "campaign_id": ["K1", "K2"],
        "name": ["spring", "far future"],
        "started_at": ["2024-03-01", "2024-12-01"],
        "ends_at": ["2024-03-31", "2025-03-01"],  # K2 runs past the data end: allowed
        "segment": ["lapsed", "all"],
        "offer": ["10% off", None],
        "coupon_rate": [0.1, None],
        "coupon_cap": [5000, None],
    }
)


def _contacts(**changes: list[Any]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "campaign_id": ["K1", "K1", "K1", "K1"],
            "customer_id": ["c1", "c2", "c3", "c4"],
            "group": ["treated", "Treated ", "holdout", "treated"],
            "contacted_at": ["2024-03-01 09:00"] * 4,
        }
    )
    for column, values in changes.items():
        frame[column] = values
    return frame


def _load(
    tmp_path: Path,
    contacts: pd.DataFrame,
    campaigns: pd.DataFrame | None = CAMPAIGNS,
    values: dict[str, dict[str, str]] | None = None,
):
    tables: dict[str, Any] = {"customers": {"path": "customers.csv"}, "orders": {"path": "o.csv"}}
    CUSTOMERS.to_csv(tmp_path / "customers.csv", index=False)
    ORDERS.to_csv(tmp_path / "o.csv", index=False)
    contacts.to_csv(tmp_path / "contacts.csv", index=False)
    tables["contacts"] = {"path": "contacts.csv", "values": values or {}}
    if campaigns is not None:
        campaigns.to_csv(tmp_path / "campaigns.csv", index=False)
        tables["campaigns"] = {"path": "campaigns.csv"}
    settings = DataSettings.model_validate(
        {"tables": tables, "end": "2025-01-01", "max_reject_share": 0.5}
    )
    return load_tables(settings, tmp_path)


def test_good_tables_load_with_contract_dtypes(tmp_path: Path) -> None:
    tables, report = _load(tmp_path, _contacts())
    assert tables.contacts is not None and tables.campaigns is not None
    assert list(tables.contacts.group) == ["treated", "treated", "holdout", "treated"]
    assert str(tables.contacts.contacted_at.dtype) == "datetime64[ns]"
    assert tables.campaigns.coupon_rate.tolist()[0] == 0.1
    assert tables.campaigns.ends_at.max() == pd.Timestamp("2025-03-01")
    assert report.tables["contacts"].rows_rejected == 0
    assert report.tables["campaigns"].rows_rejected == 0


def test_a_wrong_group_value_is_counted_with_an_example(tmp_path: Path) -> None:
    _tables, report = _load(tmp_path, _contacts(group=["treated", "control", "holdout", "treated"]))
    contacts = report.tables["contacts"]
    assert contacts.rejected == {"group not one of treated/holdout": 1}
    assert contacts.examples["group not one of treated/holdout"][0]["group"] == "control"


def test_a_file_of_wrong_group_values_names_file_and_column(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"contacts\.csv: column 'group'.*'control'") as err:
        _load(tmp_path, _contacts(group=["control"] * 4))
    assert "tables.contacts.values: {group: {<its value>: treated or holdout}}" in str(err.value)


def test_a_value_mapping_reads_a_file_that_names_the_groups_otherwise(tmp_path: Path) -> None:
    """A control group called `Control ` and a treated one `test`: mapped in the config,
    compared stripped and lower-cased, the rows load as the contract's groups."""
    groups = ["test", "Control ", "test", "TEST"]
    values = {"group": {"control": "holdout", "Test": "Treated"}}
    tables, report = _load(tmp_path, _contacts(group=groups), values=values)
    assert list(tables.contacts.group) == ["treated", "holdout", "treated", "treated"]
    assert report.tables["contacts"].rows_rejected == 0
    assert report.tables["contacts"].hints == {}  # nothing rejected, nothing to advise
    # a value the mapping does not name is judged as before, under the file's own value,
    # and the report's line says how to map it
    groups = ["test", "control", "pilot", "test"]
    tables, report = _load(tmp_path, _contacts(group=groups), values=values)
    contacts = report.tables["contacts"]
    assert list(tables.contacts.group) == ["treated", "holdout", "treated"]
    assert contacts.examples["group not one of treated/holdout"][0]["group"] == "pilot"
    line = next(t for t in report.summary_lines() if "not one of" in t)
    assert "tables.contacts.values: {group: {<its value>: treated or holdout}}" in line


def test_a_value_mapping_reads_numbered_groups_as_the_contract_reads_ids(tmp_path: Path) -> None:
    """Groups written 1/0 in a float column (1.0, 0.0) map by `1` and `0`, as ids read."""
    contacts = _contacts(group=[1.0, 0.0, 1.0, None])
    tables, report = _load(tmp_path, contacts, values={"group": {"1": "treated", "0": "holdout"}})
    assert list(tables.contacts.group) == ["treated", "holdout", "treated"]
    assert report.tables["contacts"].rejected == {"missing group": 1}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"customer_id": {"a": "b"}}, "'customer_id' is not a contract column of fixed values"),
        ({"group": {"control": "hold"}}, r"maps onto \['hold'\].*\['treated', 'holdout'\]"),
        ({"group": {"Control": "holdout", "control ": "treated"}}, "are one value"),
        ({"group": {" ": "holdout"}}, "a blank value cannot be mapped"),
    ],
)
def test_a_value_mapping_that_cannot_be_right_is_a_config_error(
    tmp_path: Path, values: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _load(tmp_path, _contacts(), values=values)


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"contacts\.csv: column 'group'.*is missing"):
        _load(tmp_path, _contacts().drop(columns="group"))


def test_unparseable_dates_name_file_and_column(tmp_path: Path) -> None:
    bad = _contacts(contacted_at=["yesterday", "soon", "later", "never"])
    with pytest.raises(ContractError, match=r"contacts\.csv: column 'contacted_at'.*not valid"):
        _load(tmp_path, bad)


def test_unknown_campaign_is_rejected_by_reason(tmp_path: Path) -> None:
    _tables, report = _load(tmp_path, _contacts(campaign_id=["K1", "K1", "K1", "K9"]))
    assert report.tables["contacts"].rejected == {"unknown campaign": 1}
    with pytest.raises(ContractError, match=r"contacts\.csv: column 'campaign_id'.*unknown"):
        _load(tmp_path, _contacts(campaign_id=["K9"] * 4))


def test_contacts_of_a_rejected_campaign_row_say_so_and_do_not_stop_the_load(tmp_path):
    """K1's row has a negative coupon cap: its row is rejected (and named), and its
    contacts follow it under a reason that names the cause, not "unknown campaign", and
    however many they are they do not break the contacts file (its rows are not at fault)."""
    bad = CAMPAIGNS.assign(coupon_cap=[-5000, None])
    tables, report = _load(tmp_path, _contacts(), campaigns=bad)
    assert report.tables["campaigns"].rejected == {"negative coupon_cap": 1}
    followed = "campaign's row rejected in campaigns"
    assert report.tables["contacts"].rejected == {followed: 4}
    assert "unknown campaign" not in "\n".join(report.summary_lines())
    assert tables.contacts.empty


def test_a_customer_both_treated_and_held_out_is_rejected_in_both_rows(tmp_path: Path) -> None:
    """Listed first as holdout, then as treated: keeping the first row measured them as
    held out without a word. Neither row can be trusted; an exact repeat keeps one."""
    contacts = _contacts(
        customer_id=["c1", "c2", "c3", "c3"], group=["treated", "treated", "holdout", "treated"]
    )
    tables, report = _load(tmp_path, pd.concat([contacts, contacts.iloc[[0]]]))
    rejected = report.tables["contacts"].rejected
    assert rejected == {
        "campaign_id+customer_id listed with different groups": 2,
        "duplicate campaign_id+customer_id": 1,
    }
    assert sorted(tables.contacts["customer_id"]) == ["c1", "c2"]


def test_contacts_without_a_campaigns_table_are_fine(tmp_path: Path) -> None:
    tables, _report = _load(tmp_path, _contacts(campaign_id=["K9"] * 4), campaigns=None)
    assert tables.campaigns is None and len(tables.contacts) == 4


def test_duplicate_contact_and_unknown_customer(tmp_path: Path) -> None:
    _tables, report = _load(tmp_path, _contacts(customer_id=["c1", "c1", "c2", "zz"]))
    assert report.tables["contacts"].rejected == {
        "unknown customer": 1,
        "duplicate campaign_id+customer_id": 1,
    }


def test_campaign_rules(tmp_path: Path) -> None:
    campaigns = CAMPAIGNS.assign(
        ends_at=["2024-02-01", "2025-03-01"], coupon_rate=[0.1, 1.5], coupon_cap=[5000, 1]
    )
    _tables, report = _load(tmp_path, _contacts(), campaigns=pd.concat([campaigns, CAMPAIGNS]))
    rejected = report.tables["campaigns"].rejected
    assert rejected == {
        "coupon_rate outside [0, 1]": 1,
        "ends_at before started_at": 1,
    }  # the good copies of K1 and K2 are kept: a rejected row is not a duplicate
