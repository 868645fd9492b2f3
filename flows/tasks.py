"""Tasks shared by several flows."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from features.contract import LoadReport
from features.schema import ShopTables
from flows import steps
from flows.config import DangolConfig


@task(retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def load_shop_task(config: DangolConfig) -> tuple[ShopTables, LoadReport]:
    """Read and validate the raw tables (retried: files may sit on flaky storage)."""
    return steps.load_shop(config, get_run_logger().info)
