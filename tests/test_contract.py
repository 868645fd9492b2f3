"""The raw-data contract loaders: mapping, bad rows by reason, contract errors, aggregation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from features.contract import ContractError, LoadReport
from features.loaders import ORDER_CANCELLED, DataSettings, load_tables
from features.schema import SCHEMAS
from flows.tasks import load_report_rows

REPO = Path(__file__).resolve().parents[1]
ONLINE_RETAIL_CONFIG = REPO / "configs" / "online_retail.yaml"

# A small invoice-line export in the Online Retail style: source names, one cancellation.
LINES = pd.DataFrame(
    {
        "Invoice": ["1001", "1001", "1002", "C1003", "1004", "1004", "1005", "1006"],
        "Sku": ["A", "B", "A", "A", "C", "A", "B", "C"],
        "Qty": [2, 1, 3, -2, 1, 4, 1, 5],
        "Price": [10.0, 5.5, 10.0, 10.0, 99.0, 10.0, 5.5, 2.0],
        "Customer": [12346.0, 12346.0, 12347.0, 12347.0, 12348.0, 12348.0, 12346.0, 12349.0],
        "When": [
            "2011-01-03 10:00",
            "2011-01-03 10:00",
            "2011-01-04 09:30",
            "2011-01-05 12:00",
            "2011-02-01 08:00",
            "2011-02-01 08:05",
            "2011-03-01 17:45",
            "2011-03-02 11:00",
        ],
    }
)
LINE_MAPPING = {
    "order_id": "Invoice",
    "product_id": "Sku",
    "quantity": "Qty",
    "unit_price": "Price",
    "customer_id": "Customer",
    "ordered_at": "When",
}
CANCELLATION = [{"column": "Invoice", "startswith": "C", "reason": "cancellation"}]


def _write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def _settings(tables: dict[str, Any], **extra: Any) -> DataSettings:
    return DataSettings.model_validate(
        {
            "timezone": "Europe/London",
            "currency": "GBP",
            "end": "2012-01-01",
            **extra,
            "tables": tables,
        }
    )


def _assert_nothing_lost(report: LoadReport) -> None:
    for name, table in report.tables.items():
        assert table.rows_read == table.rows_kept + sum(table.rejected.values()), name
        for reason in table.rejected:
            assert 1 <= len(table.examples[reason]) <= 3, (name, reason)


def _assert_contract_dtypes(frame: pd.DataFrame, table: str) -> None:
    expected = SCHEMAS[table].columns
    assert {c: str(frame[c].dtype) for c in frame} == {c: expected[c] for c in frame}


def load_data_section(yaml_path: Path) -> DataSettings:
    """The `data:` section of a config file, validated (the full config loader lives in flows)."""
    return DataSettings.model_validate(yaml.safe_load(yaml_path.read_text())["data"])


# ----------------------------------------------------------------------------- good files


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".csv.gz"])
def test_good_file_loads_with_mapping(tmp_path: Path, suffix: str) -> None:
    _write(LINES, tmp_path / f"lines{suffix}")
    source = {"path": f"lines{suffix}", "columns": LINE_MAPPING, "exclude": CANCELLATION}
    tables, report = load_tables(_settings({"order_items": source}), base_dir=tmp_path)

    items = tables.order_items
    assert items is not None
    assert len(items) == 7
    assert report.tables["order_items"].rejected == {"cancellation": 1}
    assert report.tables["order_items"].examples["cancellation"][0]["Invoice"] == "C1003"
    # Float-typed customer ids lose their ".0"; ids are the "string" dtype.
    assert set(items["customer_id"]) == {"12346", "12347", "12348", "12349"}
    assert items["ordered_at"].iloc[0] == pd.Timestamp("2011-01-03 10:00")
    for name, frame in tables.present().items():
        _assert_contract_dtypes(frame, name)
    _assert_nothing_lost(report)
    assert any("cancellation" in line for line in report.summary_lines())


def test_orders_aggregated_from_lines_match_hand_sums(tmp_path: Path) -> None:
    _write(LINES, tmp_path / "lines.parquet")
    source = {"path": "lines.parquet", "columns": LINE_MAPPING, "exclude": CANCELLATION}
    tables, report = load_tables(_settings({"order_items": source}), base_dir=tmp_path)

    orders = tables.orders.set_index("order_id")
    assert sorted(orders.index) == ["1001", "1002", "1004", "1005", "1006"]
    assert orders.loc["1001", "amount"] == pytest.approx(2 * 10.0 + 1 * 5.5)
    assert orders.loc["1002", "amount"] == pytest.approx(30.0)
    assert orders.loc["1004", "amount"] == pytest.approx(99.0 + 40.0)
    assert orders.loc["1004", "ordered_at"] == pd.Timestamp("2011-02-01 08:00")  # earliest line
    assert orders.loc["1004", "customer_id"] == "12348"
    assert orders.loc["1006", "amount"] == pytest.approx(10.0)
    _assert_contract_dtypes(tables.orders, "orders")
    assert report.tables["orders"].rows_kept == 5


def test_an_order_under_two_customers_is_rejected_whole_and_counted(tmp_path: Path) -> None:
    """Whose order 1004 was cannot be told when its lines name two customers: crediting it
    to the first would move spend between them silently."""
    lines = LINES.copy()
    lines.loc[5, "Customer"] = 12349.0  # the second line of 1004 under another customer
    _write(lines, tmp_path / "lines.parquet")
    source = {"path": "lines.parquet", "columns": LINE_MAPPING, "exclude": CANCELLATION}
    tables, report = load_tables(_settings({"order_items": source}), base_dir=tmp_path)

    assert sorted(tables.orders["order_id"]) == ["1001", "1002", "1005", "1006"]
    assert "1004" not in set(tables.order_items["order_id"])
    items = report.tables["order_items"]
    assert items.rejected == {"cancellation": 1, "order_id under more than one customer": 2}
    # shown as the file has them, though they were dropped after validation: their place
    # in the file (the cancellation before them was filtered out) and their own values
    assert items.columns["order_id under more than one customer"] == "Invoice"
    first, second = items.examples["order_id under more than one customer"]
    assert (first["_row"], first["Invoice"], first["Sku"]) == (4, "1004", "C")
    assert (second["_row"], second["Customer"]) == (5, 12349.0)
    _assert_nothing_lost(report)
    assert any("order_id under more than one customer" in line for line in report.summary_lines())


def test_orders_and_customers_with_nothing_left_are_counted(tmp_path: Path) -> None:
    """Aggregated orders are counted like a table: an order whose every line was excluded or
    rejected, and a customer whose every order went, do not vanish without a word."""
    lines = LINES.copy()
    lines.loc[7, "Price"] = 0.0  # 1006, the only order of 12349: its one line is rejected
    only_cancelled = {"Invoice": "C1007", "Sku": "A", "Qty": -1, "Price": 10.0}
    only_cancelled |= {"Customer": 12350.0, "When": "2011-03-03 10:00"}
    lines = pd.concat([lines, pd.DataFrame([only_cancelled])], ignore_index=True)
    _write(lines, tmp_path / "lines.parquet")
    source = {"path": "lines.parquet", "columns": LINE_MAPPING, "exclude": CANCELLATION}
    tables, report = load_tables(_settings({"order_items": source}), base_dir=tmp_path)

    orders = report.tables["orders"]
    assert sorted(tables.orders["order_id"]) == ["1001", "1002", "1004", "1005"]
    assert (orders.rows_read, orders.rows_kept) == (7, 4)
    assert orders.rejected == {"every line filtered out": 2, "every line rejected": 1}
    assert orders.filtered == ["every line filtered out"]
    assert orders.examples["every line rejected"] == [{"Invoice": "1006"}]
    assert {e["Invoice"] for e in orders.examples["every line filtered out"]} == {
        "C1003",
        "C1007",
    }
    # 12347 lost C1003 but kept 1002; 12349 and 12350 kept nothing
    assert report.customers_without_orders == {
        "every order excluded by config": 1,
        "every order rejected": 1,
    }
    _assert_nothing_lost(report)
    lines_shown = report.summary_lines()
    assert "orders: kept 4 of 7 rows" in lines_shown[1]
    assert lines_shown[-1] == (
        "customers left with no order: 1 every order excluded by config, 1 every order rejected"
    )
    assert report.to_dict()["customers_without_orders"] == report.customers_without_orders
    artifact = {(r["table"], r["reason"]): r["rows"] for r in load_report_rows(report)}
    assert artifact[("orders", "every line rejected")] == 1
    assert artifact[("customers", "no order left: every order rejected")] == 1


def test_customers_whose_orders_were_all_rejected_are_counted_from_an_orders_file(
    tmp_path: Path,
) -> None:
    orders = pd.DataFrame(
        {
            "order_id": ["o1", "o2", "o3"],
            "customer_id": ["c1", "c2", "c2"],
            "ordered_at": ["2024-03-01", "2024-03-02", "2024-03-03"],
            "amount": ["100", "-5", "abc"],
        }
    )
    _write(orders, tmp_path / "orders.csv")
    _write(
        pd.DataFrame({"customer_id": ["c1", "c2"], "signed_up_at": ["2024-01-01"] * 2}),
        tmp_path / "customers.csv",
    )
    tables_cfg = {"customers": {"path": "customers.csv"}, "orders": {"path": "orders.csv"}}
    settings = _settings(tables_cfg, max_reject_share=0.5, end="2025-01-01")
    tables, report = load_tables(settings, tmp_path)

    assert list(tables.orders["order_id"]) == ["o1"]
    assert len(tables.customers) == 2  # c2 stays a member, but the report says why it has none
    assert report.customers_without_orders == {"every order rejected": 1}
    _assert_nothing_lost(report)


def test_nothing_lost_reports_no_lost_customers(tmp_path: Path) -> None:
    _write(LINES, tmp_path / "lines.parquet")
    source = {"path": "lines.parquet", "columns": LINE_MAPPING}
    _, report = load_tables(_settings({"order_items": source}), base_dir=tmp_path)
    assert report.customers_without_orders == {}
    assert not any("no order" in line for line in report.summary_lines())


def _load_lines_with_times(tmp_path: Path, when: list[str]):
    lines = LINES.assign(When=when)
    _write(lines, tmp_path / "lines.csv")
    source = {"path": "lines.csv", "columns": LINE_MAPPING, "exclude": CANCELLATION}
    return load_tables(_settings({"order_items": source}), base_dir=tmp_path)


def test_a_day_first_file_is_read_day_first_even_when_its_first_date_is_ambiguous(
    tmp_path: Path,
) -> None:
    """A parser that takes the format from the first value reads 01/02/2011 as 2 January
    and swaps day and month in every ambiguous row of a UK or European export."""
    when = [
        "01/02/2011 10:00",
        "01/02/2011 10:00",
        "04/02/2011 09:30",
        "05/02/2011 12:00",
        "23/02/2011 08:00",
        "23/02/2011 08:05",
        "01/03/2011 17:45",
        "02/03/2011 11:00",
    ]
    tables, report = _load_lines_with_times(tmp_path, when)
    orders = tables.orders.set_index("order_id")["ordered_at"]
    assert orders["1001"] == pd.Timestamp("2011-02-01 10:00")
    assert orders["1005"] == pd.Timestamp("2011-03-01 17:45")
    assert report.tables["order_items"].rejected == {"cancellation": 1}


def test_dates_written_both_ways_reject_the_ambiguous_rows_by_name(tmp_path: Path) -> None:
    """23/02 is day-first and 02/24 month-first: in such a column 01/03 could be 1 March or
    3 January, so those rows are rejected and counted, the unambiguous ones kept."""
    when = [
        "23/02/2011 10:00",
        "23/02/2011 10:00",
        "02/24/2011 09:30",
        "02/25/2011 12:00",
        "01/03/2011 08:00",
        "01/03/2011 08:05",
        "03/03/2011 17:45",
        "26/03/2011 11:00",
    ]
    tables, report = _load_lines_with_times(tmp_path, when)
    reason = "ambiguous day/month in ordered_at (dates written both ways)"
    assert report.tables["order_items"].rejected == {"cancellation": 1, reason: 2}
    orders = tables.orders.set_index("order_id")["ordered_at"]
    assert sorted(orders.index) == ["1001", "1002", "1005", "1006"]  # 1004 was ambiguous
    assert orders["1002"] == pd.Timestamp("2011-02-24 09:30")
    assert orders["1005"] == pd.Timestamp("2011-03-03 17:45")  # 03/03 reads the same both ways
    _assert_nothing_lost(report)


def test_day_first_reading_keeps_blanks_iso_dates_and_stray_rows_in_their_place() -> None:
    """Blanks and junk stay unparseable (no crash), ISO dates in a day-first column are not
    swapped, and one impossible row (13/13) does not make a clean column "both ways"."""
    from features.contract import day_month_order, parse_times

    mixed = pd.Series(["23/10/2011 10:00", "", None, "junk", "2011-10-05", "01/02/2011"])
    parsed = parse_times(mixed, "Europe/London")
    assert parsed.iloc[0] == pd.Timestamp("2011-10-23 10:00")
    assert parsed.iloc[1:4].isna().all()
    assert parsed.iloc[4] == pd.Timestamp("2011-10-05")  # ISO: year, month, day
    assert parsed.iloc[5] == pd.Timestamp("2011-02-01")
    stray = pd.Series(["12/01/2011"] * 150 + ["13/13/2011", "23/02/2011"])
    order = day_month_order(stray)
    assert order.day_first and not order.ambiguous.any()
    assert parse_times(stray, "Europe/London").iloc[0] == pd.Timestamp("2011-01-12")


def test_all_four_tables_with_contract_names(tmp_path: Path) -> None:
    _write(
        pd.DataFrame({"customer_id": ["c1", "c2"], "signed_up_at": ["2024-01-01", "2024-02-01"]}),
        tmp_path / "customers.csv",
    )
    _write(
        pd.DataFrame(
            {
                "order_id": ["o1", "o2"],
                "customer_id": ["c1", "c2"],
                "ordered_at": pd.to_datetime(["2024-03-01", "2024-03-02"]),
                "amount": [1000.0, 2500.0],
            }
        ),
        tmp_path / "orders.parquet",
    )
    _write(
        pd.DataFrame(
            {
                "order_id": ["o1", "o2"],
                "product_id": ["p1", "p2"],
                "quantity": [1, 2],
                "unit_price": [1000.0, 1250.0],
            }
        ),
        tmp_path / "order_items.parquet",
    )
    _write(
        pd.DataFrame(
            {
                "customer_id": ["c1"],
                "viewed_at": ["2024-02-28 10:00"],
                "product_id": ["p1"],
                "price": [0.0],
                "brand": [None],
            }
        ),
        tmp_path / "content_views.csv",
    )
    tables_cfg = {
        "customers": {"path": "customers.csv"},
        "orders": {"path": "orders.parquet"},
        "order_items": {"path": "order_items.parquet"},
        "content_views": {"path": "content_views.csv"},
    }
    tables, report = load_tables(
        _settings(tables_cfg, timezone="Asia/Seoul", end="2025-01-01"), tmp_path
    )
    assert {n: len(f) for n, f in tables.present().items()} == {
        "customers": 2,
        "orders": 2,
        "order_items": 2,
        "content_views": 1,
    }
    for name, frame in tables.present().items():
        _assert_contract_dtypes(frame, name)
    assert tables.content_views is not None and tables.content_views["brand"].isna().all()
    _assert_nothing_lost(report)


# ----------------------------------------------------------------------------- bad rows


def test_each_bad_row_reason_is_counted_with_an_example(tmp_path: Path) -> None:
    good = {"customer_id": "c1", "ordered_at": "2024-01-01 10:00", "amount": "100"}
    rows = [{"order_id": f"o{i}", **good} for i in range(20)]
    bad = [
        ({"order_id": ""}, "missing order_id"),
        ({"customer_id": None}, "missing customer_id"),
        ({"ordered_at": "not a time"}, "unparseable ordered_at"),
        ({"ordered_at": None}, "missing ordered_at"),
        ({"amount": "12abc"}, "unparseable amount"),
        ({"amount": "-5"}, "non-positive amount"),
        ({"amount": "0"}, "non-positive amount"),
        ({"ordered_at": "2031-01-01"}, "after data end"),
        ({"order_id": "o0"}, "duplicate order_id"),
        ({"customer_id": "ghost"}, "unknown customer"),
    ]
    for i, (change, _) in enumerate(bad):
        rows.append({**good, "order_id": f"bad{i}", **change})
    _write(pd.DataFrame(rows), tmp_path / "orders.csv")
    _write(
        pd.DataFrame({"customer_id": ["c1", "c1"], "signed_up_at": ["2023-01-01", "2023-06-01"]}),
        tmp_path / "customers.csv",
    )
    items = pd.DataFrame(
        {
            "order_id": ["o1", "o2", "o3", "nope", "o4", "o5"],
            "product_id": ["p"] * 6,
            "quantity": [1, 0, 1, 1, 2, 1],
            "unit_price": [5.0, 5.0, -1.0, 5.0, 5.0, 5.0],
        }
    )
    _write(items, tmp_path / "items.parquet")
    views = pd.DataFrame(
        {
            "customer_id": ["c1"] * 4,
            "viewed_at": ["2024-01-01"] * 4,
            "product_id": ["p", None, "p", "p"],
            "price": [10.0, 10.0, -3.0, 0.0],
        }
    )
    _write(views, tmp_path / "views.csv")
    tables_cfg = {
        "customers": {"path": "customers.csv"},
        "orders": {"path": "orders.csv"},
        "order_items": {"path": "items.parquet"},
        "content_views": {"path": "views.csv"},
    }
    tables, report = load_tables(_settings(tables_cfg, end="2030-01-01"), base_dir=tmp_path)

    rejected = report.tables["orders"].rejected
    expected: dict[str, int] = {}
    for _, reason in bad:
        expected[reason] = expected.get(reason, 0) + 1
    assert rejected == expected
    assert len(tables.orders) == 20
    example = report.tables["orders"].examples["unparseable ordered_at"][0]
    assert example["ordered_at"] == "not a time" and example["order_id"] == "bad2"
    assert example["_row"] == 22  # its place in the file: 20 good rows, then bad0, bad1
    assert report.tables["customers"].rejected == {"duplicate customer_id": 1}
    assert report.tables["order_items"].rejected == {
        "non-positive quantity": 1,
        "non-positive unit_price": 1,
        "unknown order": 1,
    }
    assert report.tables["content_views"].rejected == {"missing product_id": 1, "negative price": 1}
    _assert_nothing_lost(report)
    assert report.to_dict()["tables"]["orders"]["rejected"] == expected


def test_too_many_rejections_for_one_reason_break_the_contract(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "order_id": ["1", "2", "3", "4"],
            "customer_id": ["a", None, None, None],
            "ordered_at": ["2024-01-01"] * 4,
            "amount": [1.0] * 4,
        }
    )
    _write(frame, tmp_path / "orders.csv")
    with pytest.raises(ContractError) as error:
        load_tables(_settings({"orders": {"path": "orders.csv"}}), base_dir=tmp_path)
    message = str(error.value)
    assert "orders.csv" in message and "'customer_id'" in message
    assert "missing customer_id" in message and "75.0%" in message and "'order_id': '2'" in message


def test_equals_filters_match_text_and_numbers(tmp_path: Path) -> None:
    _write(LINES, tmp_path / "lines.parquet")
    exclude = [
        {"column": "Sku", "equals": "B", "reason": "gift wrap"},
        {"column": "Customer", "equals": 12349, "reason": "staff account"},
    ]
    source = {"path": "lines.parquet", "columns": LINE_MAPPING, "exclude": exclude}
    tables, report = load_tables(_settings({"order_items": source}), base_dir=tmp_path)
    rejected = report.tables["order_items"].rejected
    # Without the cancellation filter, C1003's negative quantity is rejected on its own.
    assert rejected == {"gift wrap": 2, "staff account": 1, "non-positive quantity": 1}
    assert report.tables["order_items"].examples["staff account"][0]["Customer"] == 12349.0
    assert json.loads(json.dumps(report.to_dict()))["tables"]["order_items"]["rows_read"] == 8
    _assert_nothing_lost(report)


def test_cancellations_do_not_count_against_max_reject_share(tmp_path: Path) -> None:
    frame = LINES.assign(Invoice=["C" + i for i in LINES["Invoice"][:6]] + ["1005", "1006"])
    _write(frame, tmp_path / "lines.csv")
    source = {"path": "lines.csv", "columns": LINE_MAPPING, "exclude": CANCELLATION}
    tables, report = load_tables(_settings({"order_items": source}), base_dir=tmp_path)
    assert report.tables["order_items"].rejected == {"cancellation": 6}
    assert len(tables.orders) == 2


# ----------------------------------------------------------------------------- times


def test_tz_aware_times_are_converted_to_the_shop_zone(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "order_id": ["1", "2", "3"],
            "customer_id": ["a", "a", "b"],
            "ordered_at": ["2024-01-01T00:00:00Z", "2024-07-01 09:00:00+09:00", "2024-03-01 08:00"],
            "amount": [1.0, 2.0, 3.0],
        }
    )
    _write(frame, tmp_path / "orders.csv")
    aware = frame.assign(
        ordered_at=pd.to_datetime(["2024-01-01", "2024-07-01", "2024-03-01"], utc=True)
    )
    _write(aware, tmp_path / "orders.parquet")
    settings = {"timezone": "Asia/Seoul", "end": "2030-01-01"}

    from_csv, _ = load_tables(_settings({"orders": {"path": "orders.csv"}}, **settings), tmp_path)
    times = from_csv.orders.set_index("order_id")["ordered_at"]
    assert times["1"] == pd.Timestamp("2024-01-01 09:00")  # UTC midnight is 9:00 in Seoul
    assert times["2"] == pd.Timestamp("2024-07-01 09:00")
    assert times["3"] == pd.Timestamp("2024-03-01 08:00")  # naive: already local
    assert str(from_csv.orders["ordered_at"].dtype) == "datetime64[ns]"

    from_pq, _ = load_tables(
        _settings({"orders": {"path": "orders.parquet"}}, **settings), tmp_path
    )
    assert from_pq.orders["ordered_at"].tolist() == [
        pd.Timestamp("2024-01-01 09:00"),
        pd.Timestamp("2024-07-01 09:00"),
        pd.Timestamp("2024-03-01 09:00"),
    ]


# ----------------------------------------------------------------------------- broken files


def test_missing_required_column_names_file_and_column(tmp_path: Path) -> None:
    _write(LINES.drop(columns=["Price"]), tmp_path / "lines.csv")
    source = {"path": "lines.csv", "columns": LINE_MAPPING}
    with pytest.raises(ContractError) as error:
        load_tables(_settings({"order_items": source}), base_dir=tmp_path)
    message = str(error.value)
    assert "lines.csv" in message and "'Price'" in message and "'unit_price'" in message
    assert "'Qty'" in message  # the columns the file does have


def test_unmapped_required_column_is_looked_up_by_contract_name(tmp_path: Path) -> None:
    _write(
        pd.DataFrame({"order_id": ["1"], "customer_id": ["a"], "ordered_at": ["2024-01-01"]}),
        tmp_path / "orders.csv",
    )
    with pytest.raises(ContractError, match=r"orders\.csv.*'amount'"):
        load_tables(_settings({"orders": {"path": "orders.csv"}}), base_dir=tmp_path)


def test_garbage_column_names_file_column_and_example(tmp_path: Path) -> None:
    frame = LINES.assign(When=["soon", "later", "yesterday", "never", "?", "tbd", "x", "y"])
    _write(frame, tmp_path / "lines.csv")
    source = {"path": "lines.csv", "columns": LINE_MAPPING}
    with pytest.raises(ContractError) as error:
        load_tables(_settings({"order_items": source}), base_dir=tmp_path)
    message = str(error.value)
    assert "lines.csv" in message and "'When'" in message and "'soon'" in message

    _write(LINES.assign(Price=["cheap"] * 8), tmp_path / "prices.parquet")
    source = {"path": "prices.parquet", "columns": LINE_MAPPING}
    with pytest.raises(ContractError, match=r"prices\.parquet.*'Price'.*not valid numbers.*cheap"):
        load_tables(_settings({"order_items": source}), base_dir=tmp_path)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    source = {"path": "nope.csv", "columns": LINE_MAPPING}
    with pytest.raises(ContractError, match=r"nope\.csv: file not found"):
        load_tables(_settings({"order_items": source}), base_dir=tmp_path)
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    source = {"path": "broken.parquet", "columns": LINE_MAPPING}
    with pytest.raises(ContractError, match=r"broken\.parquet: cannot read"):
        load_tables(_settings({"order_items": source}), base_dir=tmp_path)


def _duckdb_shop(path: Path, lines: pd.DataFrame) -> None:
    """A database the way a shop keeps one: lines in a schema, a view over them."""
    import duckdb

    with duckdb.connect(str(path)) as connection:
        connection.execute("CREATE SCHEMA sales")
        connection.register("frame", lines)
        connection.execute("CREATE TABLE sales.lines AS SELECT * FROM frame")
        connection.execute("CREATE VIEW paid_lines AS SELECT * FROM sales.lines")


def test_a_duckdb_database_table_or_view_loads_like_the_same_file(tmp_path: Path) -> None:
    _write(LINES, tmp_path / "lines.parquet")
    _duckdb_shop(tmp_path / "shop.duckdb", LINES)
    from_file, file_report = load_tables(
        _settings({"order_items": {"path": "lines.parquet", "columns": LINE_MAPPING}}), tmp_path
    )
    before = (tmp_path / "shop.duckdb").read_bytes()
    for table in ("sales.lines", "lines", "paid_lines"):
        source = {"path": "shop.duckdb", "table": table, "columns": LINE_MAPPING}
        source["exclude"] = CANCELLATION
        tables, report = load_tables(_settings({"order_items": source}), tmp_path)
        expected = from_file.orders[from_file.orders["order_id"] != "C1003"].reset_index(drop=True)
        pd.testing.assert_frame_equal(tables.orders, expected)
        assert report.tables["order_items"].rejected == {"cancellation": 1}
        assert report.tables["order_items"].source.endswith(f"shop.duckdb table {table}")
        _assert_nothing_lost(report)
    # opened read-only: the shop's own database is never written
    assert (tmp_path / "shop.duckdb").read_bytes() == before
    assert not list(tmp_path.glob("shop.duckdb.wal"))


def test_duckdb_names_match_as_duckdb_matches_them(tmp_path: Path) -> None:
    """Case-insensitively, quoted or not, `main` first when two schemas have the table."""
    import duckdb

    with duckdb.connect(str(tmp_path / "shop.duckdb")) as connection:
        connection.register("frame", LINES)
        connection.execute("CREATE TABLE Order_Items AS SELECT * FROM frame")
        connection.execute("CREATE SCHEMA archive")
        connection.execute("CREATE TABLE archive.order_items AS SELECT * FROM frame LIMIT 1")
    for table in (None, "ORDER_ITEMS", '"main"."Order_Items"', "archive.order_items"):
        source = {"path": "shop.duckdb", "columns": LINE_MAPPING}
        if table is not None:
            source["table"] = table
        _, report = load_tables(_settings({"order_items": source}), tmp_path)
        read = report.tables["order_items"].rows_read
        assert read == (1 if table == "archive.order_items" else len(LINES)), table


def test_a_duckdb_file_another_process_is_writing_is_named_so(tmp_path: Path) -> None:
    import subprocess
    import sys

    _duckdb_shop(tmp_path / "shop.duckdb", LINES)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('open', "
            "flush=True); time.sleep(60)",
            str(tmp_path / "shop.duckdb"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        source = {"path": "shop.duckdb", "table": "paid_lines", "columns": LINE_MAPPING}
        with pytest.raises(ContractError, match="another process has this DuckDB database open"):
            load_tables(_settings({"order_items": source}), tmp_path)
    finally:
        holder.kill()
        holder.wait()


def test_a_duckdb_source_names_what_is_wrong(tmp_path: Path) -> None:
    _duckdb_shop(tmp_path / "shop.duckdb", LINES)
    source = {"path": "shop.duckdb", "columns": LINE_MAPPING}  # default table: order_items
    with pytest.raises(ContractError, match=r"no table or view 'order_items'.*'sales\.lines'"):
        load_tables(_settings({"order_items": source}), tmp_path)
    source["table"] = "sales.nope"
    with pytest.raises(ContractError, match=r"no table or view 'sales\.nope'"):
        load_tables(_settings({"order_items": source}), tmp_path)
    (tmp_path / "text.duckdb").write_text("not a database")
    source = {"path": "text.duckdb", "table": "lines", "columns": LINE_MAPPING}
    with pytest.raises(ContractError, match=r"text\.duckdb: cannot open as a DuckDB database"):
        load_tables(_settings({"order_items": source}), tmp_path)
    typo = {**LINE_MAPPING, "order_id": "Invoyce"}
    source = {"path": "shop.duckdb", "table": "paid_lines", "columns": typo}
    with pytest.raises(ContractError, match=r"shop\.duckdb table paid_lines: column 'Invoyce'"):
        load_tables(_settings({"order_items": source}), tmp_path)
    with pytest.raises(ValidationError, match="names a table of a DuckDB file"):
        DataSettings.model_validate({"tables": {"orders": {"path": "o.csv", "table": "x"}}})


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"timezon": "UTC"}, "timezon"),
        ({"tables": {"orders": {"path": "o.csv", "colums": {}}}}, "colums"),
        (
            {
                "tables": {
                    "orders": {
                        "path": "o.csv",
                        "exclude": [{"column": "x", "startswith": "C", "reason": "r", "why": 1}],
                    }
                }
            },
            "why",
        ),
        ({"tables": {"order": {"path": "o.csv"}}}, "order"),
        ({"tables": {"orders": {"path": "o.csv", "columns": {"amout": "Total"}}}}, "amout"),
        ({"tables": {"orders": {"path": "o.xlsx"}}}, "o.xlsx"),
        ({"timezone": "Mars/Olympus"}, "Mars/Olympus"),
        ({"tables": {"customers": {"path": "c.csv"}}}, "orders or order_items"),
        ({"tables": {"order_items": {"path": "i.csv"}}}, "customer_id"),
    ],
)
def test_bad_settings_are_named(data: dict[str, Any], named: str) -> None:
    raw = {"tables": {"orders": {"path": "o.csv"}}, **data}
    with pytest.raises(ValidationError) as error:
        DataSettings.model_validate(raw)
    assert named in str(error.value)


def test_format_is_inferred_from_the_suffix() -> None:
    settings = DataSettings.model_validate(
        {"tables": {"orders": {"path": "a.csv.gz"}, "order_items": {"path": "b.parquet"}}}
    )
    assert settings.tables["orders"].format == "csv"
    assert settings.tables["order_items"].format == "parquet"
    shop = DataSettings.model_validate({"tables": {"orders": {"path": "shop.DuckDB"}}})
    assert shop.tables["orders"].format == "duckdb"


# ----------------------------------------------------------------------------- real data


def test_online_retail_config_loads_the_real_log() -> None:
    settings = load_data_section(ONLINE_RETAIL_CONFIG)
    source = (ONLINE_RETAIL_CONFIG.parent / settings.tables["order_items"].path).resolve()
    if not source.is_file():
        pytest.skip(f"Online Retail data not present at {source}")
    tables, report = load_tables(settings, base_dir=ONLINE_RETAIL_CONFIG.parent)

    assert abs(tables.orders["customer_id"].nunique() - 4_337) <= 5
    assert abs(len(tables.orders) - 18_460) <= 20
    rejected = report.tables["order_items"].rejected
    assert rejected["cancellation"] == 9_288
    # same-day cancellations are netted: 12346's only order (£77,184) was cancelled 16
    # minutes later, so they never bought; 72 orders were cancelled whole
    assert "12346" not in set(tables.orders["customer_id"])
    assert report.tables["orders"].rejected[ORDER_CANCELLED] == 72
    assert abs(tables.orders["amount"].sum() - 8_606_845) < 10
    assert rejected["missing customer_id"] > 100_000
    assert report.tables["order_items"].rows_read == 541_909
    _assert_nothing_lost(report)
    for name, frame in tables.present().items():
        _assert_contract_dtypes(frame, name)


SAME_DAY = pd.DataFrame(
    {
        "Invoice": ["2001", "2001", "C2001", "2002", "C2002", "2003", "C2003", "C2004"],
        "Sku": ["A", "B", "A", "A", "A", "C", "C", "D"],
        "Qty": [3, 1, -2, 4, -4, 2, -1, -1],
        "Price": [10.0, 5.0, 10.0, 7.0, 7.0, 3.0, 3.0, 9.0],
        "Customer": [1.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 3.0],
        "When": [
            "2011-01-03 10:00",
            "2011-01-03 10:00",
            "2011-01-03 10:20",  # two of the three A's cancelled the same day
            "2011-01-04 23:50",
            "2011-01-04 23:58",  # the whole order, 8 minutes later
            "2011-01-05 09:00",
            "2011-01-06 00:10",  # the next day: a return, not netted
            "2011-01-06 09:00",  # nothing of D was bought: nothing to net
        ],
    }
)


def test_same_day_cancellations_are_netted_into_the_lines_they_cancel(tmp_path: Path) -> None:
    _write(SAME_DAY, tmp_path / "lines.csv")
    exclude = [{**CANCELLATION[0], "net_same_day": True}]
    source = {"path": "lines.csv", "columns": LINE_MAPPING, "exclude": exclude}
    tables, report = load_tables(_settings({"order_items": source}), tmp_path)
    amounts = tables.orders.set_index("order_id")["amount"].to_dict()
    # 2001: one A left of three, and the B; 2002 is gone; 2003 keeps both C's (a return the
    # next day is after any cutoff that sees the order, so netting it would leak)
    assert amounts == {"2001": 15.0, "2003": 6.0}
    assert list(tables.orders["customer_id"]) == ["1", "3"]
    items = report.tables["order_items"]
    assert items.rejected == {"cancellation": 4, ORDER_CANCELLED: 1}
    # the netted line is shown as the file has it: its place, names and values
    (example,) = items.examples[ORDER_CANCELLED]
    assert items.columns[ORDER_CANCELLED] == "Qty"
    assert example == {
        "_row": 3,
        "Invoice": "2002",
        "Sku": "A",
        "Qty": "4",  # a CSV's text, as read
        "Price": "7.0",
        "Customer": "2.0",
        "When": "2011-01-04 23:50",
    }
    assert report.tables["orders"].rejected[ORDER_CANCELLED] == 1
    assert report.customers_without_orders == {"every order cancelled the day it was placed": 1}
    _assert_nothing_lost(report)
    text = "\n".join(report.summary_lines())
    assert "netted 2 cancellation lines (48.00 GBP)" in text
    assert "1 orders cancelled whole" in text and "; 2 cancellation lines (12.00 GBP" in text
    # without netting the cancelled order stays at full value, as before
    plain = {**source, "exclude": CANCELLATION}
    tables, _ = load_tables(_settings({"order_items": plain}), tmp_path)
    assert tables.orders.set_index("order_id")["amount"].to_dict() == {
        "2001": 35.0,
        "2002": 28.0,
        "2003": 6.0,
    }


def test_lines_dropped_after_validation_are_shown_at_their_place_in_the_file(
    tmp_path: Path,
) -> None:
    """A line validation rejected and a filtered cancellation come before an order under two
    customers and a line netting empties: each example is still the file's own row."""
    lines = pd.DataFrame(
        {
            "Invoice": ["1001", "1002", "C9", "1003", "1003", "1005", "1006"],
            "Sku": ["A", "A", "B", "C", "D", "B", "A"],
            "Qty": [2, -3, -1, 1, 1, 1, 1],
            "Price": [10.0, 10.0, 5.0, 4.0, 4.0, 5.0, 10.0],
            "Customer": [1.0, 1.0, 3.0, 2.0, 4.0, 3.0, 3.0],
            "When": [
                "2011-01-03 10:00",
                "2011-01-03 11:00",
                "2011-01-05 10:30",  # cancels row 5 the same day
                "2011-01-04 09:00",
                "2011-01-04 09:05",  # order 1003 under a second customer
                "2011-01-05 10:00",
                "2011-01-05 11:00",
            ],
        }
    )
    _write(lines, tmp_path / "lines.csv")
    exclude = [{**CANCELLATION[0], "net_same_day": True}]
    source = {"path": "lines.csv", "columns": LINE_MAPPING, "exclude": exclude}
    _tables, report = load_tables(_settings({"order_items": source}), tmp_path)
    items = report.tables["order_items"]
    assert items.examples["non-positive quantity"][0]["_row"] == 1
    shared = items.examples["order_id under more than one customer"]
    assert [(e["_row"], e["Sku"]) for e in shared] == [(3, "C"), (4, "D")]
    (netted,) = items.examples[ORDER_CANCELLED]
    assert (netted["_row"], netted["Invoice"]) == (5, "1005")
    assert all(len(t.kept_rows) == 0 for t in report.tables.values())  # not held after use


def _netted(tmp_path: Path, lines: list[tuple], **extra: Any) -> dict[str, float]:
    """Order amounts after netting a small line file of (invoice, sku, qty, price, when)."""
    frame = pd.DataFrame(lines, columns=["Invoice", "Sku", "Qty", "Price", "When"])
    _write(frame.assign(Customer=1.0), tmp_path / "lines.csv")
    exclude = [{**CANCELLATION[0], "net_same_day": True}]
    source = {"path": "lines.csv", "columns": LINE_MAPPING, "exclude": exclude}
    tables, report = load_tables(_settings({"order_items": source}, **extra), tmp_path)
    _assert_nothing_lost(report)
    return tables.orders.set_index("order_id")["amount"].to_dict()


def test_a_cancellation_spreads_over_the_days_lines_and_prefers_its_exact_line(tmp_path):
    # the same product twice in one order: a cancellation of all five takes both lines
    twice = [
        ("1", "P", 2, 1.0, "2011-01-03 10:00"),
        ("1", "P", 3, 1.0, "2011-01-03 10:00"),
        ("1", "Q", 1, 4.0, "2011-01-03 10:00"),
        ("C1", "P", -5, 1.0, "2011-01-03 11:00"),
    ]
    assert _netted(tmp_path, twice) == {"1": 4.0}
    # four cancelled after two orders that day: the order of exactly four, not the latest
    exact = [
        ("1", "P", 4, 1.0, "2011-01-03 09:00"),
        ("2", "P", 1, 1.0, "2011-01-03 10:00"),
        ("C1", "P", -4, 1.0, "2011-01-03 11:00"),
    ]
    assert _netted(tmp_path, exact) == {"2": 1.0}


def test_a_cancellation_at_another_price_is_another_purchase(tmp_path: Path) -> None:
    """Manual lines ("M") carry any price: a £15 cancellation does not take a £1,241 line."""
    lines = [("1", "M", 1, 1241.98, "2011-01-03 10:00"), ("C1", "M", -1, 15.0, "2011-01-03 11:00")]
    assert _netted(tmp_path, lines) == {"1": 1241.98}


def test_a_day_first_file_nets_by_the_date_its_lines_are_read_with(tmp_path: Path) -> None:
    """The cancellations alone (03/02) cannot tell day from month; the column (25/01) can:
    3 February's order is cancelled, not 2 March's."""
    lines = [
        ("1", "P", 1, 2.0, "25/01/2011 10:00"),
        ("2", "P", 1, 3.0, "03/02/2011 10:00"),
        ("3", "P", 1, 5.0, "02/03/2011 10:00"),
        ("C2", "P", -1, 3.0, "03/02/2011 11:00"),
    ]
    assert _netted(tmp_path, lines) == {"1": 2.0, "3": 5.0}


def test_a_cancellation_after_the_data_end_is_not_read(tmp_path: Path) -> None:
    """With an end at 10:30 the data knows the 10:00 order, not its 11:00 cancellation: the
    score at the end sees the order, as it was then."""
    lines = [
        ("1", "P", 1, 2.0, "2011-01-03 10:00"),
        ("C1", "P", -1, 2.0, "2011-01-03 11:00"),
        ("2", "Q", 1, 7.0, "2011-01-03 12:00"),
    ]
    assert _netted(tmp_path, lines, end="2011-01-03 10:30") == {"1": 2.0}
    assert _netted(tmp_path, lines, end="2011-01-04") == {"2": 7.0}


@pytest.mark.parametrize("with_orders", [False, True])
def test_netting_goes_on_order_lines_that_make_the_orders(with_orders: bool) -> None:
    exclude = [{**CANCELLATION[0], "net_same_day": True}]
    tables: dict[str, Any] = {"order_items": {"path": "lines.csv", "exclude": exclude}}
    if with_orders:
        tables["orders"] = {"path": "orders.csv"}
    else:
        tables = {"orders": {"path": "orders.csv", "exclude": exclude}}
    with pytest.raises(ValidationError, match="net_same_day nets cancelled order lines"):
        _settings(tables)


def test_a_configured_end_cuts_later_events_on_purpose(tmp_path: Path) -> None:
    """Training "as of" an earlier date on the same files: most events come after data.end
    and are cut like a configured filter, not counted as bad rows against max_reject_share;
    without data.end (now), events in the future still mean a bad clock and are rejected."""
    times = ["2024-01-05", "2024-03-01", "2024-06-01", "2024-07-01", "2024-08-01"]
    orders = pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(5)],
            "customer_id": ["c1"] * 5,
            "ordered_at": times,
            "amount": ["10"] * 5,
        }
    )
    _write(orders, tmp_path / "orders.csv")
    tables_cfg = {"orders": {"path": "orders.csv"}}
    as_of = _settings(tables_cfg, max_reject_share=0.5, end="2024-05-01")
    tables, report = load_tables(as_of, tmp_path)
    assert list(tables.orders["order_id"]) == ["o0", "o1"]
    assert report.tables["orders"].rejected == {"after data end": 3}
    assert any("after data end [excluded by config]" in line for line in report.summary_lines())
    # the lines of the cut orders go with them, not as lines of "unknown order"
    items = pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(5)],
            "product_id": "p",
            "quantity": 1,
            "unit_price": 10,
        }
    )
    _write(items, tmp_path / "items.csv")
    with_items = {**tables_cfg, "order_items": {"path": "items.csv"}}
    tables, report = load_tables(
        _settings(with_items, max_reject_share=0.5, end="2024-05-01"), tmp_path
    )
    assert report.tables["order_items"].rejected == {"after data end": 3}
    assert list(tables.order_items["order_id"]) == ["o0", "o1"]
    assert "[excluded by config]" in "\n".join(report.summary_lines()).split("order_items")[1]

    future = orders.assign(
        ordered_at=["2024-01-05", "2099-01-01", "2099-02-01", "2099-03-01", "2024-02-01"]
    )
    _write(future, tmp_path / "orders.csv")
    with pytest.raises(ContractError, match="rejected as 'after data end', above max_reject_share"):
        load_tables(_settings(tables_cfg, max_reject_share=0.5, end=None), tmp_path)


def test_a_lines_log_cut_by_data_end_counts_its_orders_and_customers_as_excluded(
    tmp_path: Path,
) -> None:
    """Orders whose every line came after data.end, and customers left with none, were
    reported as rejected: they are cut on purpose."""
    _write(LINES, tmp_path / "lines.csv")
    source = {"path": "lines.csv", "columns": LINE_MAPPING, "exclude": CANCELLATION}
    _, report = load_tables(_settings({"order_items": source}, end="2011-02-15"), tmp_path)
    orders = report.tables["orders"]
    # 1005 and 1006 come after the end; C1003 is a cancellation
    assert orders.rejected == {"every line filtered out": 3}
    assert report.customers_without_orders == {"every order excluded by config": 1}  # 12349
