"""Random holdouts for exported campaign lists (DESIGN §3.8), and the files they produce.

Every list handed to marketing keeps back a random share of its customers. Without that
holdout nothing can be measured afterwards: `models.measure` compares the treated with the
held-out customers of the same list. The split is a pure function of (campaign id, customer
id) through a stable hash, so a re-run of an export agrees with the first run, and two
campaigns split the same customers independently. The contacts file is written in the
raw-data contract's format (`features.schema.CONTACTS`), ready to be loaded as the
`contacts` table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features.files import write_atomic_csv
from features.schema import CONTACTS, HOLDOUT, TREATED

_SCALE = float(2**64)


def unit_hash(campaign_id: str, customer_ids: Iterable[str]) -> np.ndarray:
    """A number in [0, 1) per customer, uniform and fixed for each (campaign, customer) pair.

    BLAKE2b of "campaign\\x1fcustomer" (not Python's `hash`, which is salted per process).
    """
    prefix = f"{campaign_id}\x1f".encode()
    values = [
        int.from_bytes(hashlib.blake2b(prefix + str(c).encode(), digest_size=8).digest(), "big")
        for c in customer_ids
    ]
    return np.asarray(values, dtype=np.uint64).astype(np.float64) / _SCALE


def assign_groups(
    customer_ids: Iterable[str], campaign_id: str, holdout_share: float
) -> np.ndarray:
    """ "treated" or "holdout" per customer: holdout where the unit hash is below the share."""
    if not 0.0 <= holdout_share < 1.0:
        raise ValueError(f"holdout_share must be in [0, 1), got {holdout_share}")
    if not str(campaign_id):
        raise ValueError("campaign_id must not be empty: it seeds the holdout split")
    u = unit_hash(str(campaign_id), customer_ids)
    return np.where(u < holdout_share, HOLDOUT, TREATED).astype(object)


def contacts_frame(
    customer_ids: Iterable[str],
    campaign_id: str,
    holdout_share: float,
    contacted_at: datetime,
    coupon_id: str | None = None,
) -> pd.DataFrame:
    """The contract `contacts` rows of one campaign: every listed customer and their group."""
    ids = pd.array(list(customer_ids), dtype="string")
    frame = pd.DataFrame(
        {
            "campaign_id": pd.array([str(campaign_id)] * len(ids), dtype="string"),
            "customer_id": ids,
            "group": pd.array(assign_groups(ids, campaign_id, holdout_share), dtype="string"),
            "contacted_at": pd.Series(pd.Timestamp(contacted_at), index=range(len(ids))).astype(
                CONTACTS.columns["contacted_at"]
            ),
        }
    )
    if coupon_id is not None:
        frame["coupon_id"] = pd.array([coupon_id] * len(ids), dtype="string")
    return frame


@dataclass(frozen=True)
class HoldoutExport:
    """What `export_with_holdout` wrote: the list to contact and the contacts log rows."""

    treated_path: Path
    contacts_path: Path
    treated: int
    holdout: int


def export_with_holdout(
    members: pd.DataFrame,
    campaign_id: str,
    holdout_share: float,
    contacted_at: datetime,
    out_dir: Path,
    coupon_id: str | None = None,
) -> HoldoutExport:
    """Split a ranked list into treated and holdout and write both files atomically.

    `members` has a `customer_id` column and whatever else the list carries (scores,
    segment, reasons); its row order is kept. Writes `<campaign>_treated.csv` (the treated
    rows with all their columns: the list marketing contacts) and `<campaign>_contacts.csv`
    (treated and holdout in the contract's `contacts` format, to be appended to the shop's
    contacts table so that `dangol measure` can judge the campaign).
    """
    if "customer_id" not in members.columns:
        raise ValueError(f"members needs a customer_id column, has {list(members.columns)}")
    if members["customer_id"].duplicated().any():
        raise ValueError("members lists a customer twice; one row per customer")
    contacts = contacts_frame(
        members["customer_id"].astype("string"), campaign_id, holdout_share, contacted_at, coupon_id
    )
    treated_rows = members[(contacts["group"] == TREATED).to_numpy()]
    out_dir = Path(out_dir)
    treated_path = write_atomic_csv(treated_rows, out_dir / f"{campaign_id}_treated.csv")
    contacts_path = write_atomic_csv(contacts, out_dir / f"{campaign_id}_contacts.csv")
    n_holdout = int((contacts["group"] == HOLDOUT).sum())
    return HoldoutExport(treated_path, contacts_path, len(treated_rows), n_holdout)
