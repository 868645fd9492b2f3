"""A content hash of the contract tables: the "data version" that keys caches and runs.

Two loads of the same data give the same fingerprint; any changed, added or removed row, or
a table that appears or goes missing, changes it.
"""

from __future__ import annotations

import hashlib

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
