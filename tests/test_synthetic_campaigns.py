"""The synthetic shop's planted campaigns: contract-clean logs that agree with the truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.contract import Checks, validate_table
from features.schema import CAMPAIGNS, CONTACTS, ShopTables
from features.synthetic import CAMPAIGN_PLANS, campaign_truth, generate_shop

N, SEED = 5_000, 3


@pytest.fixture(scope="module")
def shop() -> ShopTables:
    return generate_shop(N, SEED)


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    return campaign_truth(N, SEED)


def test_logs_pass_the_contract(shop: ShopTables) -> None:
    assert shop.contacts is not None and shop.campaigns is not None
    references = {"customer_id": (shop.customers.customer_id, "unknown customer")}
    references["campaign_id"] = (shop.campaigns.campaign_id, "unknown campaign")
    checks = Checks(end=pd.Timestamp("2026-01-01"), references=references)
    _clean, report = validate_table(CONTACTS, shop.contacts, "contacts", checks)
    assert report.rows_rejected == 0
    _clean, report = validate_table(CAMPAIGNS, shop.campaigns, "campaigns", checks)
    assert report.rows_rejected == 0
    assert len(shop.campaigns) == len(CAMPAIGN_PLANS)
    assert (shop.campaigns.ends_at < pd.Timestamp("2026-01-01")).all()


def test_holdout_shares_follow_the_plans(shop: ShopTables) -> None:
    for plan, (_, row) in zip(CAMPAIGN_PLANS, shop.campaigns.iterrows(), strict=True):
        groups = shop.contacts[shop.contacts.campaign_id == row.campaign_id].group
        share, n = (groups == "holdout").mean(), len(groups)
        assert abs(share - plan.holdout_share) < 4 * np.sqrt(plan.holdout_share / n)


def test_orders_agree_with_the_potential_outcomes(shop: ShopTables, truth: pd.DataFrame) -> None:
    """Treated customers bought in the window iff y1, holdout customers iff y0."""
    orders = shop.orders
    for _, campaign in shop.campaigns.iterrows():
        inside = orders[
            (orders.ordered_at >= campaign.started_at) & (orders.ordered_at < campaign.ends_at)
        ]
        rows = truth[truth.campaign_id == campaign.campaign_id]
        bought = rows.customer_id.isin(inside.customer_id).to_numpy()
        expected = np.where(rows.group == "treated", rows.y1, rows.y0).astype(bool)
        assert (bought == expected).all(), campaign.campaign_id


def test_personas_carry_the_planted_effects(truth: pd.DataFrame) -> None:
    effect = (truth.y1 - truth.y0).groupby(truth.persona).mean()
    assert effect["persuadable"] > 0.15
    assert effect["sleeping_dog"] < -0.1
    assert effect["sure_thing"] == 0 and effect["lost_cause"] == 0
    base = truth.groupby("persona").y0.mean()
    assert base["sure_thing"] > 2 * base["lost_cause"]  # sure things buy anyway


def test_one_persona_per_customer_across_campaigns(truth: pd.DataFrame) -> None:
    assert (truth.groupby("customer_id").persona.nunique() == 1).all()
