"""Row-level validation of raw tables against the contract (DESIGN §3.1), and its report.

`validate_table` casts one table to the canonical dtypes of `features.schema` and sorts every
row it cannot keep into a named reason (missing id, unparseable time, non-positive amount,
duplicate key, event after the data end, unknown reference, ...). Rows are never dropped
silently: each reason keeps a count and a few example source rows, and a table whose rows
are mostly bad for one reason — or a column that is almost all unparseable — raises a
`ContractError` naming the file, the column and an example row. Everything is vectorised so
that millions of rows validate in seconds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.schema import COUNT, ID, MONEY, TIME, TableSchema

MAX_EXAMPLES = 3
# A column this unparseable is the wrong column or an unsupported format, not a few bad rows.
UNPARSEABLE_COLUMN_SHARE = 0.9
# Time strings are probed on a sample first so a garbage column fails fast instead of being
# fed, value by value, to the slow fallback parser.
TIME_PROBE_ROWS = 1_000
# Failures of the fast, format-inferring time parse are retried one by one up to this many.
MIXED_RETRY_LIMIT = 200_000
# Rejection rules by (table, column): values must be > 0, or >= 0.
POSITIVE = {("orders", "amount"), ("order_items", "quantity"), ("order_items", "unit_price")}
NON_NEGATIVE = {("content_views", "price"), ("campaigns", "coupon_cap")}
UNIT_INTERVAL = {("campaigns", "coupon_rate")}  # shares: 0 <= value <= 1
# Tz-aware time strings: a clock time followed by Z, UTC or a numeric offset.
_AWARE = r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$"
_NS_MIN = pd.Timestamp.min.as_unit("us")
_NS_MAX = pd.Timestamp.max.as_unit("us")


class ContractError(ValueError):
    """A source file that breaks the raw-data contract; the message names file, column, row."""


@dataclass
class TableReport:
    """What happened to one table on load: rows read, kept, and rejected by reason."""

    table: str
    source: str
    rows_read: int = 0
    rows_kept: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # reason -> the source column it concerns, so messages can point into the file.
    columns: dict[str, str] = field(default_factory=dict)
    # Reasons from configured filters: intended exclusions, exempt from max_reject_share.
    filtered: list[str] = field(default_factory=list)
    # Reasons that follow another table's rejected row (contacts of a campaign whose row
    # was invalid): that table's check judges the row; these rows are not a second fault.
    followed: list[str] = field(default_factory=list)
    # the rows (of the validated frame) cut on purpose by a configured data end, directly or
    # through the record they belong to (none without a configured end). Not reported.
    cut_rows: np.ndarray = field(
        default_factory=lambda: np.zeros(0, dtype=bool), repr=False, compare=False
    )
    # the place in the file of each row the validated frame kept (its row i is the file's
    # row kept_rows[i]), so a row dropped later can be shown as the file has it. Not reported.
    kept_rows: np.ndarray = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False, compare=False
    )
    # what was done to the kept rows beyond keeping them (cancellations netted into them)
    notes: list[str] = field(default_factory=list)
    # reason -> what to change in the config when the reason stops the load
    hints: dict[str, str] = field(default_factory=dict)

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected.values())

    def add(self, reason: str, column: str, count: int, rows: pd.DataFrame) -> None:
        """Count `count` rejected rows under `reason`, keeping up to 3 of `rows` (the file's
        rows, indexed by their place in it) as examples."""
        if count == 0:
            return
        self.rejected[reason] = self.rejected.get(reason, 0) + count
        self.columns.setdefault(reason, column)
        kept = self.examples.setdefault(reason, [])
        kept.extend(example_rows(rows, MAX_EXAMPLES - len(kept)))

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record.pop("cut_rows")
        record.pop("kept_rows")
        return record


@dataclass
class LoadReport:
    """The load of one shop: a `TableReport` per contract table, and the settings used."""

    tables: dict[str, TableReport] = field(default_factory=dict)
    timezone: str = ""
    currency: str = ""
    end: str = ""
    seconds: float = 0.0
    # customers named in the orders' source with no order left, by how they lost them
    customers_without_orders: dict[str, int] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        """Human-readable lines: per table rows kept of read, then each rejection reason."""
        lines = [
            f"loaded {len(self.tables)} tables in {self.seconds:.1f}s "
            f"(times in {self.timezone}, money in {self.currency}, data end {self.end})"
        ]
        for name, t in self.tables.items():
            lines.append(f"{name}: kept {t.rows_kept:,} of {t.rows_read:,} rows ({t.source})")
            for reason, count in sorted(t.rejected.items(), key=lambda kv: -kv[1]):
                share = count / t.rows_read if t.rows_read else 0.0
                tag = " [excluded by config]" if reason in t.filtered else ""
                tag = " [follows a row rejected above]" if reason in t.followed else tag
                example = t.examples.get(reason, [{}])[0]
                hint = f"; {t.hints[reason]}" if reason in t.hints else ""
                lines.append(
                    f"  rejected {count:,} ({share:.1%}) {reason}{tag}; "
                    f"e.g. {_short(example)}{hint}"
                )
            lines += [f"  {note}" for note in t.notes]
        if self.customers_without_orders:
            lost = ", ".join(f"{n:,} {how}" for how, n in self.customers_without_orders.items())
            lines.append(f"customers left with no order: {lost}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, for logging."""
        return {
            "timezone": self.timezone,
            "currency": self.currency,
            "end": self.end,
            "seconds": round(self.seconds, 3),
            "customers_without_orders": self.customers_without_orders,
            "tables": {name: t.to_dict() for name, t in self.tables.items()},
        }


# events at or after the data end: rejected, or cut on purpose when data.end is configured
AFTER_END = "after data end"


@dataclass(frozen=True)
class Checks:
    """Table-independent rules for `validate_table`; the loader fills them from the settings."""

    timezone: str = "UTC"  # tz-aware times are converted to this zone, then made naive
    end: pd.Timestamp | None = None  # events at or after it are rejected
    # the end was configured (data.end): events after it are cut on purpose, like a filter
    # (exempt from max_reject_share); an end of "now" makes them future events, a bad clock
    end_is_set: bool = False
    max_reject_share: float = 1.0  # above this share for one reason the file breaks the contract
    required: tuple[str, ...] = ()  # optional schema columns that this table must have
    names: Mapping[str, str] = field(default_factory=dict)  # contract -> source column
    # column -> (known values, reason): rows whose value is not known are rejected.
    references: Mapping[str, tuple[pd.Series, str]] = field(default_factory=dict)
    # column -> ids whose records the configured end cut (an order after data.end): rows
    # pointing at them are cut with them, not rejected as unknown
    cut: Mapping[str, pd.Series] = field(default_factory=dict)
    # column -> (ids, reason): ids whose own row another table rejected; rows pointing at
    # them are rejected under that reason, which names the cause, not as unknown
    rejected_parents: Mapping[str, tuple[pd.Series, str]] = field(default_factory=dict)


# ----------------------------------------------------------------------------- examples


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar: None for missing, ISO strings for times, Python numbers."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, (pd.Timestamp, datetime, date)):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def example_rows(rows: pd.DataFrame, limit: int = MAX_EXAMPLES) -> list[dict[str, Any]]:
    """Up to `limit` rows as plain dicts, with their position in the file under `_row`."""
    if limit <= 0:
        return []
    head = rows.head(limit)
    records = head.to_dict(orient="records")
    return [
        {"_row": _plain(index), **{str(k): _plain(v) for k, v in record.items()}}
        for index, record in zip(head.index, records, strict=True)
    ]


def _short(example: dict[str, Any], width: int = 240) -> str:
    text = repr(example)
    return text if len(text) <= width else text[: width - 3] + "..."


def missing_column_error(
    source: str | Path,
    column: str,
    source_column: str,
    file_columns: Sequence[str],
    mapping: Mapping[str, str],
    first_rows: pd.DataFrame,
) -> ContractError:
    """The error for a contract column the file does not have."""
    example = example_rows(first_rows, 1)
    return ContractError(
        f"{source}: column {source_column!r} (contract column {column!r}) is missing; "
        f"the file has columns {list(map(str, file_columns))}; "
        f"mapping used (contract -> source): {dict(mapping) or '{} (contract names)'}; "
        f"first row: {_short(example[0]) if example else '(file is empty)'}"
    )


# ----------------------------------------------------------------------------- parsing


def _as_strings(values: pd.Series) -> pd.Series:
    """Stripped strings with NA for missing or blank values."""
    s = values.astype("string").str.strip()
    return s.mask(s == "")


def fixed_values(values: pd.Series) -> pd.Series:
    """A fixed-value column's values as the contract compares them (`TableSchema.allowed`):
    read as ids, lower-cased ("Holdout " and "holdout" are one value, 1.0 and "1" another)."""
    return parse_ids(values).str.lower()


def parse_ids(values: pd.Series) -> pd.Series:
    """Ids as the "string" dtype; numbers lose a trailing .0 (12346.0 -> "12346")."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("string")
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.astype("string")
    if pd.api.types.is_float_dtype(values.dtype):
        x = values.to_numpy(dtype="float64", na_value=np.nan)
        integral = np.isfinite(x) & (np.mod(x, 1.0) == 0) & (np.abs(x) < 2.0**53)
        out = pd.Series(pd.NA, index=values.index, dtype="string")
        out[integral] = pd.Series(x[integral].astype(np.int64), dtype="string").to_numpy()
        other = ~integral & ~np.isnan(x)
        if other.any():
            out[other] = pd.Series(x[other]).astype("string").to_numpy()
        return out
    s = _as_strings(values)
    # Ids that went through a float column on their way into a CSV end in ".0"; the cheap
    # test spares the regex on the usual id column that has no dot at all.
    if s.str.contains(".", regex=False).any():
        s = s.str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True)
    return s


def _is_in(values: pd.Series, known: pd.Series) -> np.ndarray:
    """Vectorised membership of ids (pandas' isin iterates Python-side on arrow strings)."""

    def arrow(s: pd.Series) -> pa.Array:
        array = pa.array(s.astype("string"))
        return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array

    hit = pc.is_in(arrow(values), value_set=arrow(known.drop_duplicates()))
    return hit.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)


def _to_naive_ns(times: pd.Series, timezone: str) -> pd.Series:
    """Naive local datetime64[ns]: aware times converted to `timezone`; out-of-range -> NaT."""
    if isinstance(times.dtype, pd.DatetimeTZDtype):
        times = times.dt.tz_convert(timezone).dt.tz_localize(None)
    if times.dtype.kind != "M":
        times = pd.Series(pd.NaT, index=times.index, dtype="datetime64[ns]")
    out_of_range = (times < _NS_MIN) | (times > _NS_MAX)
    if out_of_range.any():
        times = times.mask(out_of_range)
    return times.astype("datetime64[ns]")


# a date written with its day and month as numbers first: d/m/y or m/d/y (also with dots);
# RE2 syntax, for pyarrow (6x faster than pandas' str.extract on 500,000 rows)
_NUMERIC_DAY_MONTH = r"^\s*(?P<first>\d{1,2})[/.](?P<second>\d{1,2})[/.](?:\d{4}|\d{2})(?:\D|$)"
# A column "writes dates both ways" when each way is seen in at least this share of its
# d/m/y-or-m/d/y rows (and at least once): a stray row is a typo, not a convention.
BOTH_WAYS_SHARE = 0.01


@dataclass(frozen=True)
class DayMonthOrder:
    """How a time column writes d/m/y or m/d/y dates, judged on all its rows: which rows
    are written that way, whether the day comes first, and the rows whose order cannot be
    told because the column writes dates both ways (11/10/2011 beside 23/10 and 10/23)."""

    written: np.ndarray
    day_first: bool
    ambiguous: np.ndarray


def _day_month_fields(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The two leading numbers of each d/m/y or m/d/y value (NaN for any other value)."""
    array = pa.array(s.astype("string"))
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    fields = pc.extract_regex(array, pattern=_NUMERIC_DAY_MONTH)
    return tuple(
        pc.cast(pc.struct_field(fields, name), pa.float64()).to_numpy(zero_copy_only=False)
        for name in ("first", "second")
    )


def day_month_order(values: pd.Series) -> DayMonthOrder:
    """The order of day and month in a column of time strings. A parser that infers the
    format from the first value reads 01/02/2011 as 2 January and so swaps day and month in
    every ambiguous row of a day-first file; here the whole column decides: the day comes
    first when more rows can only be read day-first (23/10) than month-first (10/23)."""
    nothing = np.zeros(len(values), dtype=bool)
    none = DayMonthOrder(nothing, False, nothing)
    if values.dtype.kind == "M" or isinstance(values.dtype, pd.DatetimeTZDtype):
        return none
    if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        return none
    first, second = _day_month_fields(_as_strings(values))
    written = ~np.isnan(first)
    if not written.any():
        return none
    days = int(((first > 12) & (second <= 12)).sum())
    months = int(((second > 12) & (first <= 12)).sum())
    ambiguous = nothing
    if min(days, months) >= max(1.0, BOTH_WAYS_SHARE * written.sum()):
        ambiguous = written & (first <= 12) & (second <= 12) & (first != second)
    return DayMonthOrder(written, days > months, ambiguous)


def _parse_time_strings(
    s: pd.Series, timezone: str, fmt: str | None, dayfirst: bool = False
) -> pd.Series:
    """Parse strings; those carrying an offset go through UTC into `timezone`."""
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
    aware = s.str.contains(_AWARE, regex=True).fillna(False).to_numpy(dtype=bool)
    with warnings.catch_warnings():
        # "Could not infer format" only says the slow parser is used; failures become NaT.
        warnings.simplefilter("ignore", UserWarning)
        for part, utc in ((~aware, False), (aware, True)):
            if not part.any():
                continue
            try:
                parsed = pd.to_datetime(
                    s[part], errors="coerce", format=fmt, utc=utc, cache=False, dayfirst=dayfirst
                )
            except (ValueError, TypeError, OverflowError):
                continue  # e.g. zone names mixed with naive times: left NaT, reported
            out[part] = _to_naive_ns(parsed, timezone).to_numpy()
    return out


def _fast_time_strings(s: pd.Series, timezone: str, dayfirst: bool) -> pd.Series | None:
    """One vectorised parse with an inferred format; None when the zones are mixed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            parsed = pd.to_datetime(s, errors="coerce", cache=False, dayfirst=dayfirst)
    except (ValueError, TypeError, OverflowError):
        return None  # naive and aware (or different offsets) mixed: split them first
    return _to_naive_ns(parsed, timezone)


def parse_times(values: pd.Series, timezone: str, order: DayMonthOrder | None = None) -> pd.Series:
    """Naive datetime64[ns] in the shop's zone; NaT where missing or unparseable. `order`:
    the column's day_month_order when the caller already has it."""
    if values.dtype.kind == "M" or isinstance(values.dtype, pd.DatetimeTZDtype):
        return _to_naive_ns(values, timezone)
    if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        # Bare numbers are ambiguous (seconds? days? yyyymmdd?): treat them as unparseable.
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    s = _as_strings(values)
    order = order or day_month_order(s)
    if not order.day_first:
        return _parse_strings(s, timezone, dayfirst=False)
    # day-first for the d/m/y rows only: pandas applies dayfirst to ISO dates too
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
    written = order.written
    out[written] = _parse_strings(s[written], timezone, dayfirst=True).to_numpy()
    if not written.all():
        out[~written] = _parse_strings(s[~written], timezone, dayfirst=False).to_numpy()
    return out


def _parse_strings(s: pd.Series, timezone: str, dayfirst: bool) -> pd.Series:
    out = _fast_time_strings(s, timezone, dayfirst)
    if out is None:
        out = _parse_time_strings(s, timezone, None, dayfirst)
    # Inference takes its format from the first value; retry the others value by value.
    failed = (out.isna() & s.notna()).to_numpy()
    if 0 < failed.sum() <= MIXED_RETRY_LIMIT:
        out[failed] = _parse_time_strings(s[failed], timezone, "mixed", dayfirst).to_numpy()
    return out


_NUMBER_JUNK = r"[\s_₩$£€¥]|(?i:krw|usd|gbp|eur|jpy)"
_THOUSANDS = r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$"


def _number_strings(s: pd.Series) -> np.ndarray:
    """Numbers from stripped strings; the few that fail are retried without signs and 1,000s."""
    x = pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    failed = np.isnan(x) & s.notna().to_numpy(dtype=bool)
    if failed.any():
        rest = s[failed].str.replace(_NUMBER_JUNK, "", regex=True)
        rest = rest.mask(rest.str.match(_THOUSANDS).fillna(False), rest.str.replace(",", ""))
        x[failed] = pd.to_numeric(rest, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return x


def parse_numbers(values: pd.Series) -> pd.Series:
    """float64; NaN where missing or unparseable. Strings may carry currency signs and 1,000s."""
    dtype = values.dtype
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        x = values.to_numpy(dtype="float64", na_value=np.nan)
    else:
        x = _number_strings(_as_strings(values))
    x = np.where(np.isfinite(x), x, np.nan)
    return pd.Series(x, index=values.index, dtype="float64")


def _blank(values: pd.Series) -> np.ndarray:
    """True where a source value is missing or an empty string."""
    missing = values.isna().to_numpy(dtype=bool, copy=True)
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        missing |= _as_strings(values).isna().to_numpy(dtype=bool)
    return missing


def _parse(kind: str, values: pd.Series) -> pd.Series:
    """Ids and numbers (times go through parse_times with their column's day/month order)."""
    if kind == ID:
        return parse_ids(values)
    if kind in (MONEY, COUNT):
        return parse_numbers(values)
    raise ValueError(f"unknown contract dtype {kind!r}")


# ----------------------------------------------------------------------------- validation


def _source_name(checks: Checks, column: str) -> str:
    return checks.names.get(column, column)


def _unparseable_column(
    source: str | Path,
    column: str,
    checks: Checks,
    kind: str,
    failed: int,
    nonnull: int,
    rows: pd.DataFrame,
) -> ContractError:
    what = "times" if kind == TIME else "numbers"
    example = example_rows(rows, 1)
    return ContractError(
        f"{source}: column {_source_name(checks, column)!r} (contract column {column!r}): "
        f"{failed:,} of {nonnull:,} values are not valid {what}; "
        f"e.g. {_short(example[0]) if example else '(no rows)'}"
    )


def _probe_times(
    source: str | Path, column: str, values: pd.Series, checks: Checks, rows: pd.DataFrame
) -> None:
    """Fail fast on a time column that is garbage, judged on its first non-missing values."""
    sample = values[~_blank(values)].head(TIME_PROBE_ROWS)
    if sample.empty:
        return
    bad = parse_times(sample, checks.timezone).isna()
    if bad.mean() >= UNPARSEABLE_COLUMN_SHARE:
        raise _unparseable_column(
            source, column, checks, TIME, int(bad.sum()), len(sample), rows.loc[bad[bad].index]
        )


def validate_table(
    schema: TableSchema,
    frame: pd.DataFrame,
    source: str | Path,
    checks: Checks | None = None,
    *,
    report: TableReport | None = None,
    source_rows: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, TableReport]:
    """Cast `frame` (contract column names) to canonical dtypes and reject bad rows by reason.

    Each row lands under its first failing check, in this order: missing id, missing or
    unparseable time, missing or unparseable number, sign or range rule, value outside the
    allowed set (`schema.allowed`, compared lower-cased), times out of order
    (`schema.ordered`), event at/after the data end (except `schema.planned` columns),
    unknown reference, duplicate key (first kept). `source_rows` (same index as `frame`) are
    the original rows shown as examples; `report` continues a report the caller started
    (e.g. with rows excluded by configured filters). Returns the clean frame (index reset)
    and the report; raises ContractError when the file breaks the contract.
    """
    checks = checks or Checks()
    rows = frame if source_rows is None else source_rows
    if report is None:
        report = TableReport(schema.name, str(source), rows_read=len(frame))
    required = [*schema.required, *(c for c in checks.required if c not in schema.required)]
    for column in required:
        if column not in frame.columns:
            raise missing_column_error(
                source, column, _source_name(checks, column), list(rows.columns), checks.names, rows
            )
    present = [c for c in schema.columns if c in frame.columns]

    parsed: dict[str, pd.Series] = {}
    missing: dict[str, np.ndarray] = {}
    failed: dict[str, np.ndarray] = {}
    orders: dict[str, DayMonthOrder] = {}  # per time column, for parsing and its rejections
    for column in present:
        kind = schema.columns[column]
        values = frame[column]
        missing[column] = _blank(values)
        if kind == TIME:
            if values.dtype.kind != "M":
                _probe_times(source, column, values, checks, rows)
            orders[column] = day_month_order(values)
            parsed[column] = parse_times(values, checks.timezone, orders[column])
        else:
            parsed[column] = _parse(kind, values)
        failed[column] = parsed[column].isna().to_numpy(dtype=bool) & ~missing[column]
        nonnull = int((~missing[column]).sum())
        if kind != ID and nonnull and failed[column].sum() >= UNPARSEABLE_COLUMN_SHARE * nonnull:
            bad_rows = rows[failed[column]]
            raise _unparseable_column(
                source, column, checks, kind, int(failed[column].sum()), nonnull, bad_rows
            )

    bad = np.zeros(len(frame), dtype=bool)

    cut = np.zeros(len(frame), dtype=bool)

    def reject(reason: str, column: str, condition: np.ndarray) -> None:
        new = condition & ~bad
        count = int(new.sum())
        if count:
            first = np.flatnonzero(new)[:MAX_EXAMPLES]
            report.add(reason, _source_name(checks, column), count, rows.iloc[first])
            bad[:] |= new
            if reason == AFTER_END:
                cut[:] |= new

    ids = [c for c in present if schema.columns[c] == ID]
    times = [c for c in present if schema.columns[c] == TIME]
    numbers = [c for c in present if schema.columns[c] in (MONEY, COUNT)]
    for column in ids:
        if column in required:
            reject(f"missing {column}", column, missing[column])
    for group in (times, numbers):
        for column in group:
            if column in required:
                reject(f"missing {column}", column, missing[column])
            if column in times:
                reason = f"ambiguous day/month in {column} (dates written both ways)"
                reject(reason, column, orders[column].ambiguous)
            reject(f"unparseable {column}", column, failed[column])
    for column in numbers:
        x = parsed[column].to_numpy()
        if (schema.name, column) in POSITIVE:
            reject(f"non-positive {column}", column, x <= 0)
        elif (schema.name, column) in NON_NEGATIVE:
            reject(f"negative {column}", column, x < 0)
        elif (schema.name, column) in UNIT_INTERVAL:
            reject(f"{column} outside [0, 1]", column, (x < 0) | (x > 1))
    for column, values in schema.allowed.items():
        if column in parsed:
            parsed[column] = fixed_values(parsed[column])
            known = parsed[column].isin(values).fillna(False).to_numpy(dtype=bool)
            present_value = parsed[column].notna().to_numpy(dtype=bool)
            reason = f"{column} not one of {'/'.join(values)}"
            reject(reason, column, present_value & ~known)
            if reason in report.rejected:
                report.hints[reason] = (
                    f"if the file names them otherwise, map its values in the config: "
                    f"tables.{schema.name}.values: "
                    f"{{{column}: {{<its value>: {' or '.join(values)}}}}}"
                )
    for earlier, later in schema.ordered:
        if earlier in parsed and later in parsed:
            backwards = (parsed[later] < parsed[earlier]).fillna(False).to_numpy(dtype=bool)
            reject(f"{later} before {earlier}", later, backwards)
    if checks.end is not None:
        for column in times:
            if column in schema.planned:
                continue
            reject(AFTER_END, column, (parsed[column] >= checks.end).to_numpy(dtype=bool))
        if checks.end_is_set and AFTER_END not in report.filtered:
            report.filtered.append(AFTER_END)
    for column, (known, reason) in checks.references.items():
        if column in parsed:
            value = parsed[column]
            unknown = ~_is_in(value, known) & value.notna().to_numpy(dtype=bool)
            if column in checks.cut:
                reject(AFTER_END, column, unknown & _is_in(value, checks.cut[column]))
            if column in checks.rejected_parents:
                ids, parent_reason = checks.rejected_parents[column]
                reject(parent_reason, column, unknown & _is_in(value, ids))
                if parent_reason in report.rejected and parent_reason not in report.followed:
                    report.followed.append(parent_reason)
            reject(reason, column, unknown)
    if schema.key and all(c in parsed for c in schema.key):
        for column in (c for c in schema.agreeing if c in parsed):
            keyed = pd.DataFrame({c: parsed[c] for c in (*schema.key, column)})[~bad]
            differing = keyed.groupby(list(schema.key), dropna=False)[column].transform("nunique")
            torn = np.zeros(len(frame), dtype=bool)
            torn[np.flatnonzero(~bad)[(differing > 1).to_numpy()]] = True
            reject(f"{'+'.join(schema.key)} listed with different {column}s", column, torn)
        keys = pd.DataFrame({c: parsed[c] for c in schema.key})[~bad]
        duplicated = np.zeros(len(frame), dtype=bool)
        duplicated[np.flatnonzero(~bad)[keys.duplicated(keep="first").to_numpy()]] = True
        reject(f"duplicate {'+'.join(schema.key)}", schema.key[0], duplicated)

    report.rows_kept = int((~bad).sum())
    report.cut_rows = cut if checks.end_is_set else np.zeros(len(frame), dtype=bool)
    _check_shares(report, source, checks)
    keep = ~bad
    report.kept_rows = rows.index.to_numpy()[keep]
    clean = pd.DataFrame(
        {c: parsed[c][keep].reset_index(drop=True).astype(schema.columns[c]) for c in present}
    )
    return clean, report


def _check_shares(report: TableReport, source: str | Path, checks: Checks) -> None:
    """Raise when one reason (other than a configured filter) rejects too many rows."""
    if not report.rows_read:
        return
    for reason, count in report.rejected.items():
        share = count / report.rows_read
        if reason in report.filtered or reason in report.followed:
            continue
        if share <= checks.max_reject_share:
            continue
        example = report.examples.get(reason, [{}])[0]
        raise ContractError(
            f"{source}: column {report.columns.get(reason, '?')!r}: {count:,} of "
            f"{report.rows_read:,} rows ({share:.1%}) rejected as {reason!r}, above "
            f"max_reject_share {checks.max_reject_share:g}; e.g. {_short(example)}"
            + (f"; {report.hints[reason]}" if reason in report.hints else "")
        )
