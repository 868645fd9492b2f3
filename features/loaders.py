"""Loading a shop's own files onto the raw-data contract (DESIGN §3.1).

The `data:` section of a config (`DataSettings`) says where each contract table lives (CSV
or Parquet), which source column holds which contract column, and which rows to exclude on
purpose (e.g. cancelled invoices). `load_tables` reads the files, applies the mapping and the
filters, validates every row with `features.contract.validate_table`, aggregates orders from
order lines when there is no orders file, and returns the clean `ShopTables` with a
`LoadReport` of what was rejected and why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from features.contract import (
    MAX_EXAMPLES,
    Checks,
    ContractError,
    DayMonthOrder,
    LoadReport,
    TableReport,
    day_month_order,
    fixed_values,
    missing_column_error,
    parse_ids,
    validate_table,
)
from features.netting import Netting, net_same_day, parse_cancellations
from features.schema import SCHEMAS, ShopTables

TableName = Literal["customers", "orders", "order_items", "content_views", "contacts", "campaigns"]
# Referenced tables first, so that references can be checked against their clean ids.
LOAD_ORDER: tuple[TableName, ...] = (
    "customers",
    "orders",
    "order_items",
    "content_views",
    "campaigns",
    "contacts",
)
# Without an orders file, order lines must carry these to stand in for it.
STANDALONE_ITEM_COLUMNS = ("customer_id", "ordered_at")


class RowFilter(BaseModel):
    """Rows to exclude before validation (e.g. cancellations), counted under `reason`."""

    model_config = ConfigDict(extra="forbid")

    column: str  # the SOURCE column's name
    startswith: str | None = None
    equals: str | float | None = None
    reason: str = Field(min_length=1)
    # the excluded rows are cancellation lines: net each into the line it cancels when both
    # fall on the same day (features.netting); order lines without an orders file only
    net_same_day: bool = False

    @model_validator(mode="after")
    def _one_condition(self) -> RowFilter:
        if (self.startswith is None) == (self.equals is None):
            raise ValueError(
                f"filter on column {self.column!r} (reason {self.reason!r}): "
                "set exactly one of startswith or equals"
            )
        return self

    def matches(self, values: pd.Series) -> pd.Series:
        """True where the row is excluded; ids and numbers compare by their id text."""
        if self.startswith is not None:
            hit = parse_ids(values).str.startswith(self.startswith)
        elif isinstance(self.equals, float):
            hit = pd.to_numeric(values, errors="coerce") == self.equals
        else:
            hit = parse_ids(values) == self.equals
        return hit.fillna(False).astype(bool)


SourceFormat = Literal["csv", "parquet", "duckdb"]
SUFFIX_FORMATS: dict[str, SourceFormat] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".duckdb": "duckdb",
    ".ddb": "duckdb",
}


class TableSource(BaseModel):
    """One contract table's file (or a table of a DuckDB database file), its column mapping
    and its exclusion filters."""

    model_config = ConfigDict(extra="forbid")

    path: Path  # relative paths resolve against the loader's base_dir (the config's folder)
    format: SourceFormat | None = None  # inferred from the suffix when None
    # DuckDB only: the table or view to read, optionally schema-qualified ("shop.orders");
    # default: the contract table's own name
    table: str | None = Field(None, min_length=1)
    # contract column -> source column; unmapped contract columns are looked up by own name
    columns: dict[str, str] = Field(default_factory=dict)
    # contract column -> {the file's value: the contract's}, for a column of fixed values
    # (contacts' group: `values: {group: {control: holdout, test: treated}}`); the file's
    # values are compared stripped and lower-cased, as the contract's are
    values: dict[str, dict[str, str]] = Field(default_factory=dict)
    exclude: list[RowFilter] = Field(default_factory=list)

    @model_validator(mode="after")
    def _infer_format(self) -> TableSource:
        if self.format is None:
            suffixes = [s.lower() for s in self.path.suffixes]
            if suffixes[-2:] == [".csv", ".gz"]:
                self.format = "csv"
            elif suffixes[-1:] and suffixes[-1] in SUFFIX_FORMATS:
                self.format = SUFFIX_FORMATS[suffixes[-1]]
            else:
                raise ValueError(
                    f"path {str(self.path)!r}: cannot tell the format from its suffix; "
                    "set format: csv, parquet or duckdb"
                )
        if self.table is not None and self.format != "duckdb":
            raise ValueError(
                f"path {str(self.path)!r}: `table` names a table of a DuckDB file, but this "
                f"source is {self.format}"
            )
        return self


def known_time_zone(value: str) -> str:
    """The IANA zone name itself, if this machine's zone database knows it."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


TimeZoneName = Annotated[str, AfterValidator(known_time_zone)]


class DataSettings(BaseModel):
    """The `data:` section of a config: the shop's files mapped onto the contract."""

    model_config = ConfigDict(extra="forbid")

    timezone: TimeZoneName = "Asia/Seoul"  # the shop's zone: aware times are converted to it
    currency: str = Field("KRW", pattern=r"^[A-Z]{3}$")
    max_reject_share: float = Field(0.5, gt=0.0, le=1.0)
    end: datetime | None = None  # events at/after it are rejected; default: now
    # Every campaign's attribution window when there is no campaigns table: this many days
    # from each customer's contacted_at (DESIGN §3.8, docs/measurement.md).
    attribution_days: int = Field(30, gt=0)
    tables: dict[TableName, TableSource]

    @model_validator(mode="after")
    def _tables_fit_the_contract(self) -> DataSettings:
        if "orders" not in self.tables and "order_items" not in self.tables:
            raise ValueError(
                f"tables: need orders or order_items; got {sorted(self.tables) or 'none'}"
            )
        for name, source in self.tables.items():
            unknown = sorted(set(source.columns) - set(SCHEMAS[name].columns))
            if unknown:
                raise ValueError(
                    f"tables.{name}.columns: unknown contract column(s) {unknown}; "
                    f"{name} has {list(SCHEMAS[name].columns)}"
                )
        for name, source in self.tables.items():
            check_value_mapping(name, source.values)
        for name, source in self.tables.items():
            netting = [f.reason for f in source.exclude if f.net_same_day]
            if netting and (name != "order_items" or "orders" in self.tables):
                raise ValueError(
                    f"tables.{name}.exclude ({netting[0]!r}): net_same_day nets cancelled "
                    "order lines into the lines they cancel, so it goes on order_items when "
                    "the orders are aggregated from them: remove net_same_day there, or "
                    "drop tables.orders and let the orders come from the lines (an orders "
                    "file's own cancellations are netted before loading it)"
                )
        if "orders" not in self.tables:
            mapped = self.tables["order_items"].columns
            absent = [c for c in STANDALONE_ITEM_COLUMNS if c not in mapped]
            if absent:
                raise ValueError(
                    f"tables.order_items.columns: without an orders table, order_items must map "
                    f"{absent} (orders are aggregated from the lines; map a column to itself, "
                    f"e.g. customer_id: customer_id, if the file already uses that name)"
                )
        return self

    def end_timestamp(self) -> pd.Timestamp:
        """The data end as a naive timestamp in the shop's zone (now when unset)."""
        if self.end is None:
            return pd.Timestamp.now(tz=self.timezone).tz_localize(None)
        end = pd.Timestamp(self.end)
        if end.tzinfo is not None:
            end = end.tz_convert(self.timezone).tz_localize(None)
        return end


# ----------------------------------------------------------------------------- reading


def read_source(path: Path, fmt: SourceFormat, table: str | None = None) -> pd.DataFrame:
    """The file (or, for DuckDB, its `table`) as a frame; CSV columns stay text (ids keep
    leading zeros) until validated."""
    if not path.is_file():
        raise ContractError(f"{path}: file not found")
    if fmt == "duckdb":
        if table is None:
            raise ValueError("a DuckDB source needs the table to read")
        return read_duckdb_table(path, table)
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            try:
                frame = pd.read_csv(path, dtype=str, engine="pyarrow")
            except (ValueError, ImportError):
                # The C parser copes with some files the arrow parser rejects (ragged quoting).
                frame = pd.read_csv(path, dtype=str)
    except ContractError:
        raise
    except pd.errors.EmptyDataError:
        raise ContractError(f"{path}: the file is empty (not even a header row)") from None
    except Exception as exc:  # any reader failure means the same to the user: unreadable
        raise ContractError(f"{path}: cannot read as {fmt}: {type(exc).__name__}: {exc}") from exc
    return frame.reset_index(drop=True)


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def read_duckdb_table(path: Path, table: str) -> pd.DataFrame:
    """A table or view of a DuckDB database file, opened read-only (the shop's own database
    is never written). Names match as DuckDB matches them: case-insensitively, optionally
    schema-qualified and quoted ("sales"."orders"), `main` first when several schemas have
    the table."""
    import duckdb

    schema, _, name = (part.strip('"') for part in table.rpartition("."))
    try:
        connection = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise ContractError(_duckdb_open_error(path, exc)) from None
    with connection:
        found = connection.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE lower(table_name) = lower(?) AND (? = '' OR lower(table_schema) = lower(?)) "
            "ORDER BY table_schema <> 'main', table_schema",
            [name, schema, schema],
        ).fetchall()
        if not found or (len(found) > 1 and found[0][0] != "main"):
            listed = connection.execute(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables ORDER BY 1"
            ).fetchall()
            tables = [row[0] for row in listed]
            why = "no table or view" if not found else "more than one schema has a table"
            raise ContractError(
                f"{path}: {why} {table!r} (set `table:` to one of {tables or 'none: empty'})"
            )
        qualified = ".".join(_quoted(part) for part in found[0])
        try:
            frame = connection.execute(f"SELECT * FROM {qualified}").df()
        except duckdb.Error as exc:
            raise ContractError(f"{path}: cannot read {table!r}: {exc}") from None
    return frame.reset_index(drop=True)


def _duckdb_open_error(path: Path, exc: Exception) -> str:
    if "lock" in str(exc).lower():
        # DuckDB lets one process write a database file and no other open it meanwhile
        return (
            f"{path}: another process has this DuckDB database open for writing, and DuckDB "
            "lets no one else read it meanwhile: read it when that process is done, give a "
            f"copy of the file, or export the tables to Parquet ({exc})"
        )
    return f"{path}: cannot open as a DuckDB database: {exc}"


def apply_filters(
    raw: pd.DataFrame, filters: list[RowFilter], report: TableReport, path: str | Path
) -> tuple[pd.DataFrame, pd.Series]:
    """Drop the rows the config excludes on purpose, counting each under its reason; also
    the mask of the rows that filters which net (`RowFilter.net_same_day`) took."""
    keep = pd.Series(True, index=raw.index)
    netted = pd.Series(False, index=raw.index)
    for rule in filters:
        if rule.column not in raw.columns:
            raise ContractError(
                f"{path}: filter column {rule.column!r} (reason {rule.reason!r}) is missing; "
                f"the file has columns {list(map(str, raw.columns))}"
            )
        hit = rule.matches(raw[rule.column]) & keep
        report.add(rule.reason, rule.column, int(hit.sum()), raw[hit])
        if rule.reason not in report.filtered:
            report.filtered.append(rule.reason)
        if rule.net_same_day:
            netted |= hit
        keep &= ~hit
    return (raw[keep] if not keep.all() else raw), netted


def check_value_mapping(table: TableName, values: dict[str, dict[str, str]]) -> None:
    """A `values:` mapping names columns of fixed values, maps onto those values only, and
    names each of the file's values once (as the contract compares them: `fixed_values`)."""
    allowed = SCHEMAS[table].allowed
    for column, mapping in values.items():
        where = f"tables.{table}.values.{column}"
        if column not in allowed:
            fixed = ", ".join(allowed) or "none"
            raise ValueError(
                f"tables.{table}.values: {column!r} is not a contract column of fixed values "
                f"(keys are the contract's column names); {table} has {fixed}"
            )
        wrong = sorted({v for v in mapping.values() if v.strip().lower() not in allowed[column]})
        if wrong:
            raise ValueError(
                f"{where}: maps onto {wrong}; the contract's values are {list(allowed[column])}"
            )
        keys = fixed_values(pd.Series(list(mapping), dtype="string"))
        if keys.isna().any():
            raise ValueError(f"{where}: a blank value cannot be mapped (a missing one stays so)")
        if keys.duplicated().any():
            repeated = keys.duplicated(keep=False).to_numpy()
            twice = sorted(k for k, same in zip(mapping, repeated, strict=True) if same)
            raise ValueError(f"{where}: {twice} are one value once stripped and lower-cased")


def map_values(values: pd.Series, mapping: dict[str, str]) -> pd.Series:
    """The file's values replaced by the contract's where `mapping` names them (compared as
    the contract compares them: `fixed_values`); the others are left for validation."""
    keys = fixed_values(pd.Series(list(mapping), dtype="string"))
    contract = dict(zip(keys, (v.strip().lower() for v in mapping.values()), strict=True))
    mapped = fixed_values(values).map(contract)
    return mapped.where(mapped.notna(), values.astype("string"))


def map_columns(
    raw: pd.DataFrame,
    table: TableName,
    mapping: dict[str, str],
    path: str | Path,
    values: dict[str, dict[str, str]] | None = None,
) -> pd.DataFrame:
    """The contract columns of `raw` under their contract names (same index as `raw`), with
    the file's values of fixed-value columns mapped onto the contract's (`values`)."""
    out: dict[str, pd.Series] = {}
    for column in SCHEMAS[table].columns:
        source = mapping.get(column, column)
        if source in raw.columns:
            out[column] = raw[source]
            if values and column in values:
                out[column] = map_values(raw[source], values[column])
        elif column in mapping:
            # An explicit mapping to a column the file lacks is a typo, even for optional ones.
            raise missing_column_error(path, column, source, list(raw.columns), mapping, raw)
    return pd.DataFrame(out, index=raw.index)


# ----------------------------------------------------------------------------- loading


# The tables that cannot be empty when configured, and why (an optional table such as
# content_views or campaigns may be empty: the shop has none yet).
NEEDS_ROWS = {
    "orders": "the orders table needs at least one order",
    "order_items": "the order lines need at least one line",
    "customers": "every order's customer must be in the customers table",
}


@dataclass(frozen=True)
class SourceIds:
    """The distinct ids of one contract column in a file: in every row read, and in the rows
    the configured filters left (what validation could still reject)."""

    column: str  # its name in the file
    read: pd.Index
    after_filters: pd.Index

    def lost(self, kept: pd.Series) -> tuple[pd.Index, pd.Index]:
        """The ids with no row left in `kept`: those the filters took every row of, and
        those that validation (or a later step) rejected."""
        kept_ids = pd.Index(kept.unique())  # all three hold parse_ids' strings
        return (
            self.read.difference(self.after_filters, sort=False),
            self.after_filters.difference(kept_ids, sort=False),
        )


# The id columns whose losses the load report counts: a whole order (every line gone) and a
# whole customer (every order gone) disappear without a rejected row of their own.
COUNTED_IDS = ("order_id", "customer_id")
# the key another table refers to, whose rejected rows that table's rows then follow
REFERENCED_KEYS: dict[str, tuple[str, ...]] = {"campaigns": ("campaign_id",)}


def _ids(values: pd.Series) -> pd.Index:
    # parse_ids works value by value, so parsing the distinct raw values is enough (and far
    # cheaper than parsing every line of a big log)
    distinct = pd.Series(values.unique(), dtype=values.dtype)
    return pd.Index(parse_ids(distinct).dropna().unique())


@dataclass
class LoadedTable:
    """One table after `_load_table`: its clean rows, its report, and the ids it counted."""

    frame: pd.DataFrame
    report: TableReport
    ids: dict[str, SourceIds]  # COUNTED_IDS present in the file
    # per id column, the ids whose rows the configured data end cut (for the tables that
    # refer to them)
    cut: dict[str, pd.Series]
    # per id column, the ids whose every row validation rejected (for the tables that refer
    # to them: their rows then say why, not "unknown")
    rejected: dict[str, pd.Series] = field(default_factory=dict)
    # the rows of the filters that net (RowFilter.net_same_day), parsed for matching, and
    # how many of them could not be
    cancellations: tuple[pd.DataFrame, int] | None = None
    # the file's rows the filters left, indexed by their place in the file (with the
    # report's `kept_rows`, what a row dropped after validation looked like in the file)
    file_rows: pd.DataFrame | None = None


def _load_table(
    table: TableName,
    source: TableSource,
    base_dir: Path,
    checks: Checks,
    count_ids: bool = False,
    keep_file_rows: bool = False,
) -> LoadedTable:
    """Read, filter, map and validate one table; `count_ids`: also the distinct
    `COUNTED_IDS` of the file (for the table that orders come from); `keep_file_rows`: also
    the file's rows behind the clean ones (for order lines that orders are built from)."""
    path = (base_dir / source.path).resolve()
    assert source.format is not None  # set by TableSource's validator
    read_from = source.table or table
    raw = read_source(path, source.format, read_from)
    # what messages and the report name: the file, and the table inside a database file
    where = f"{path} table {read_from}" if source.format == "duckdb" else str(path)
    if raw.empty and table in NEEDS_ROWS:
        # caught here, by name: later the empty table surfaced as a crash on a missing date
        # or as another table's rows "rejected" for pointing at nothing
        raise ContractError(f"{where}: no rows (only a header): {NEEDS_ROWS[table]}")
    report = TableReport(table, where, rows_read=len(raw))
    filtered, netted = apply_filters(raw, source.exclude, report, where)
    frame = map_columns(filtered, table, source.columns, where, source.values)
    names = {c: source.columns.get(c, c) for c in SCHEMAS[table].columns}
    checks = replace(checks, names=names)
    clean, report = validate_table(
        SCHEMAS[table], frame, where, checks, report=report, source_rows=filtered
    )
    # rows the configured end cut are cut on purpose, like the filters' (an id whose every
    # row went that way is excluded by config, not rejected)
    cut = report.cut_rows
    present = [c for c in COUNTED_IDS if c in names and names[c] in raw.columns]
    ids = {
        column: SourceIds(
            names[column], _ids(raw[names[column]]), _ids(filtered[names[column]][~cut])
        )
        for column in present
        if count_ids
    }
    cut_ids = {c: pd.Series(_ids(filtered[names[c]][cut])) for c in present if cut.any()}
    rejected = {
        column: pd.Series(_ids(filtered[names[column]][~cut]).difference(clean[column].unique()))
        for column in REFERENCED_KEYS.get(table, ())
        if report.rows_rejected and names[column] in filtered
    }
    cancellations = None
    if any(rule.net_same_day for rule in source.exclude):
        cancellations = _cancellations(raw, netted, table, source, where, checks)
    if not keep_file_rows:
        report.kept_rows = np.zeros(0, dtype=np.int64)
    file_rows = filtered if keep_file_rows else None
    return LoadedTable(clean, report, ids, cut_ids, rejected, cancellations, file_rows)


def _cancellations(
    raw: pd.DataFrame,
    netted: pd.Series,
    table: TableName,
    source: TableSource,
    where: str,
    checks: Checks,
) -> tuple[pd.DataFrame, int]:
    """The rows the netting filters took, parsed for matching (with the count of those that
    cannot be matched); their times are read with the day/month order of the file's whole
    time column, so a cancellation's date reads as its order's does."""
    time_column = source.columns.get("ordered_at", "ordered_at")
    times = raw[time_column] if time_column in raw else pd.Series(pd.NaT, index=raw.index)
    whole = day_month_order(times)
    mask = netted.to_numpy()
    order = DayMonthOrder(whole.written[mask], whole.day_first, whole.ambiguous[mask])
    rows = map_columns(raw[mask], table, source.columns, where)
    return parse_cancellations(rows, checks.timezone, order, checks.end)


def aggregate_orders(items: pd.DataFrame) -> pd.DataFrame:
    """Orders from clean order lines: first customer, earliest time, sum of quantity × price."""
    lines = items.assign(amount=items["quantity"] * items["unit_price"])
    orders = (
        lines.groupby("order_id", sort=False, observed=True)
        .agg(
            customer_id=("customer_id", "first"),
            ordered_at=("ordered_at", "min"),
            amount=("amount", "sum"),
        )
        .reset_index()
    )
    orders = orders.sort_values(["ordered_at", "order_id"], kind="stable", ignore_index=True)
    schema = SCHEMAS["orders"].columns
    return orders[list(schema)].astype(schema)


SHARED_ORDER = "order_id under more than one customer"
# An aggregated order's fate when none of its lines is left: on purpose, or by rejection.
ORDER_EXCLUDED = "every line filtered out"
ORDER_REJECTED = "every line rejected"
ORDER_CANCELLED = "cancelled the day it was placed (netted)"
CUSTOMER_EXCLUDED = "every order excluded by config"
CUSTOMER_REJECTED = "every order rejected"
CUSTOMER_CANCELLED = "every order cancelled the day it was placed"


def _count_lost(report: TableReport, reason: str, ids: SourceIds, lost: pd.Index) -> None:
    if len(lost):
        report.rejected[reason] = len(lost)
        report.columns[reason] = ids.column
        report.examples[reason] = [{ids.column: i} for i in lost[:MAX_EXAMPLES]]


def aggregated_orders_report(
    source: str, order_ids: SourceIds, orders: pd.DataFrame, cancelled: pd.Index | None = None
) -> TableReport:
    """The orders aggregated from lines, counted like a table of their own: every order id in
    the file was read, and an order with no line left is rejected, under a configured filter
    when the filters took all its lines or netting cancelled them (`cancelled`)."""
    excluded, rejected = order_ids.lost(orders["order_id"])
    netted = cancelled is not None
    cancelled = rejected.intersection(cancelled if netted else [])
    report = TableReport(
        "orders",
        f"{source} (aggregated from order_items)",
        rows_read=len(order_ids.read),
        rows_kept=len(orders),
        filtered=[ORDER_EXCLUDED, *([ORDER_CANCELLED] if netted else [])],
    )
    _count_lost(report, ORDER_EXCLUDED, order_ids, excluded)
    _count_lost(report, ORDER_CANCELLED, order_ids, cancelled)
    _count_lost(report, ORDER_REJECTED, order_ids, rejected.difference(cancelled, sort=False))
    return report


def customers_without_orders(
    customer_ids: SourceIds, orders: pd.DataFrame, cancelled: pd.Index | None = None
) -> dict[str, int]:
    """Customers the orders' source names whose every order is gone, by how: they vanish
    (or, with a customers table, look like members who never ordered)."""
    excluded, rejected = customer_ids.lost(orders["customer_id"])
    cancelled = rejected.intersection(cancelled if cancelled is not None else [])
    counts = {
        CUSTOMER_EXCLUDED: len(excluded),
        CUSTOMER_CANCELLED: len(cancelled),
        CUSTOMER_REJECTED: len(rejected) - len(cancelled),
    }
    return {reason: n for reason, n in counts.items() if n}


@dataclass(frozen=True)
class FileRows:
    """The file's rows behind a validated frame: its row i is the file's row positions[i]
    (`TableReport.kept_rows`), so a row dropped after validation is shown as the file has it:
    its place in the file, its own column names and values."""

    rows: pd.DataFrame  # the file's rows, indexed by their place in it
    positions: np.ndarray
    names: dict[str, str]  # contract column -> the file's (`TableSource.columns`)

    def of(self, frame_rows: np.ndarray | pd.Index) -> pd.DataFrame:
        return self.rows.loc[self.positions[np.asarray(frame_rows, dtype=np.int64)]]

    def without(self, dropped: np.ndarray) -> FileRows:
        return FileRows(self.rows, self.positions[~dropped], self.names)

    def name(self, column: str) -> str:
        return self.names.get(column, column)


def _drop_shared_orders(
    items: pd.DataFrame, report: TableReport, file_rows: FileRows
) -> tuple[pd.DataFrame, FileRows]:
    """Lines of an order that names more than one customer are rejected, all of them: whose
    order it was cannot be told, and crediting it to one of them would move spend between
    customers without a word."""
    owners = items.groupby("order_id", observed=True)["customer_id"].transform("nunique")
    shared = (owners > 1).to_numpy()
    if not shared.any():
        return items, file_rows
    column = file_rows.name("order_id")
    report.add(SHARED_ORDER, column, int(shared.sum()), file_rows.of(np.flatnonzero(shared)))
    report.rows_kept -= int(shared.sum())
    return items[~shared].reset_index(drop=True), file_rows.without(shared)


def _count_emptied(report: TableReport, netting: Netting, file_rows: FileRows) -> None:
    """Lines a same-day cancellation took whole leave the kept lines, on purpose."""
    emptied = file_rows.of(netting.emptied.index)
    report.add(ORDER_CANCELLED, file_rows.name("quantity"), len(emptied), emptied)
    report.rows_kept -= len(netting.emptied)
    report.filtered.append(ORDER_CANCELLED)


def load_tables(settings: DataSettings, base_dir: Path) -> tuple[ShopTables, LoadReport]:
    """Load, validate and report every configured table; orders come from lines if absent.

    Raises ContractError (naming file, column and an example row) when a file breaks the
    contract; otherwise every rejected row is counted by reason in the report.
    """
    started = time.perf_counter()
    end = settings.end_timestamp()
    report = LoadReport(timezone=settings.timezone, currency=settings.currency, end=str(end))
    base = Checks(
        timezone=settings.timezone,
        end=end,
        end_is_set=settings.end is not None,
        max_reject_share=settings.max_reject_share,
    )
    clean: dict[str, pd.DataFrame] = {}
    standalone = "orders" not in settings.tables
    order_source = "order_items" if standalone else "orders"
    source_ids: dict[str, SourceIds] = {}
    cancellations: tuple[pd.DataFrame, int] | None = None
    netting: Netting | None = None
    item_rows: pd.DataFrame | None = None
    cut_orders = pd.Series([], dtype="string")
    rejected_campaigns = pd.Series([], dtype="string")
    for table in LOAD_ORDER:
        source = settings.tables.get(table)
        if source is None:
            continue
        references: dict[str, tuple[pd.Series, str]] = {}
        if "customers" in clean and (table != "order_items" or standalone):
            references["customer_id"] = (clean["customers"]["customer_id"], "unknown customer")
        if table == "order_items" and "orders" in clean:
            references["order_id"] = (clean["orders"]["order_id"], "unknown order")
        parents: dict[str, tuple[pd.Series, str]] = {}
        if table == "contacts" and "campaigns" in clean:
            references["campaign_id"] = (clean["campaigns"]["campaign_id"], "unknown campaign")
            if len(rejected_campaigns):
                reason = "campaign's row rejected in campaigns"
                parents["campaign_id"] = (rejected_campaigns, reason)
        required = STANDALONE_ITEM_COLUMNS if table == "order_items" and standalone else ()
        # lines of an order the configured end cut go with it
        cut = {"order_id": cut_orders} if table == "order_items" and len(cut_orders) else {}
        checks = replace(
            base, required=required, references=references, cut=cut, rejected_parents=parents
        )
        loaded = _load_table(
            table,
            source,
            base_dir,
            checks,
            count_ids=table == order_source,
            keep_file_rows=standalone and table == "order_items",
        )
        if table == "orders":
            cut_orders = loaded.cut.get("order_id", cut_orders)
        if table == "campaigns":
            rejected_campaigns = loaded.rejected.get("campaign_id", rejected_campaigns)
        clean[table], report.tables[table] = loaded.frame, loaded.report
        if table == order_source:
            source_ids = loaded.ids
            cancellations = loaded.cancellations
            item_rows = loaded.file_rows

    if standalone:
        items_report = report.tables["order_items"]
        assert item_rows is not None  # the order lines were loaded: orders come from them
        behind = FileRows(item_rows, items_report.kept_rows, settings.tables["order_items"].columns)
        clean["order_items"], file_rows = _drop_shared_orders(
            clean["order_items"], items_report, behind
        )
        if cancellations is not None:
            clean["order_items"], netting = net_same_day(clean["order_items"], *cancellations)
            _count_emptied(items_report, netting, file_rows)
            items_report.notes.append(netting.note(settings.currency))
        # the file's rows served the examples: not held while the orders are built
        del item_rows, behind, file_rows
        items_report.kept_rows = np.zeros(0, dtype=np.int64)
        clean["orders"] = aggregate_orders(clean["order_items"])
        report.tables["orders"] = aggregated_orders_report(
            items_report.source,
            source_ids["order_id"],
            clean["orders"],
            netting.cancelled_orders if netting else None,
        )
    if clean["orders"].empty:
        source = report.tables["orders"].source
        raise ContractError(f"{source}: no orders left after the configured filters")
    if "customer_id" in source_ids:
        report.customers_without_orders = customers_without_orders(
            source_ids["customer_id"],
            clean["orders"],
            netting.cancelled_customers if netting else None,
        )
    report.tables = {t: report.tables[t] for t in LOAD_ORDER if t in report.tables}
    report.seconds = time.perf_counter() - started
    tables = ShopTables(
        orders=clean["orders"],
        customers=clean.get("customers"),
        order_items=clean.get("order_items"),
        content_views=clean.get("content_views"),
        contacts=clean.get("contacts"),
        campaigns=clean.get("campaigns"),
    )
    return tables, report
