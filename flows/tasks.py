"""Tasks shared by several flows."""

from __future__ import annotations

from prefect import State, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from features.contract import LoadReport
from features.schema import ShopTables
from flows import data
from flows.config import DangolConfig


def load_report_rows(report: LoadReport) -> list[dict[str, object]]:
    """One row per table and rejection reason: what was read, kept and why rows were not."""
    rows: list[dict[str, object]] = []
    for name, table in report.tables.items():
        rows.append(
            {"table": name, "reason": "kept", "rows": table.rows_kept, "of": table.rows_read}
        )
        for reason, count in sorted(table.rejected.items(), key=lambda kv: -kv[1]):
            rows.append({"table": name, "reason": reason, "rows": count, "of": table.rows_read})
    for how, count in report.customers_without_orders.items():
        rows.append(
            {"table": "customers", "reason": f"no order left: {how}", "rows": count, "of": None}
        )
    return rows


def retry_on_io_error(task: object, task_run: object, state: State) -> bool:
    """Retry reads that failed on I/O (flaky storage); bad data fails at once."""
    try:
        state.result()
    except OSError:
        return True
    except Exception:
        return False
    return False


@task(retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io_error, cache_policy=NO_CACHE)
def load_shop_task(config: DangolConfig) -> tuple[ShopTables, LoadReport]:
    """Read and validate the raw tables (retried: files may sit on flaky storage)."""
    tables, report = data.load_shop(config, get_run_logger().info)
    create_table_artifact(
        load_report_rows(report),
        key="data-load",
        description=f"rows read, kept and rejected by reason; data end {report.end}",
    )
    return tables, report
