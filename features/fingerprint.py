"""A content hash of the contract tables: the "data version" that keys caches and runs.

Two loads of the same data give the same fingerprint; any changed, added or removed row, or
a table that appears or goes missing, changes it.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import pandas as pd

from features.schema import ShopTables


def table_fingerprint(frame: pd.DataFrame) -> str:
    """Hash of a frame's columns, dtypes and row contents (row order matters)."""
    digest = hashlib.sha256()
    digest.update(repr(list(zip(frame.columns, map(str, frame.dtypes), strict=True))).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def data_fingerprint(tables: ShopTables) -> str:
    """Hash over every present table, short enough to use as a tag or cache key."""
    digest = hashlib.sha256()
    for name, frame in sorted(tables.present().items()):
        digest.update(f"{name}:{table_fingerprint(frame)};".encode())
    return digest.hexdigest()[:16]


CODE_PACKAGES = ("features", "models", "flows", "serving")


@functools.cache
def code_version() -> str:
    """Hash of the package sources: a new or changed feature, label or model recipe changes
    it, so runs and caches keyed by it are redone rather than reported as unchanged."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for package in CODE_PACKAGES:
        for path in sorted((root / package).glob("*.py")):
            digest.update(f"{package}/{path.name}:".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
