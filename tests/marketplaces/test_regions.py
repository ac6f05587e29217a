"""Seller Central consent hosts and parameters per marketplace, region and app status."""

from __future__ import annotations

import pytest

from marketplaces.amazon.regions import (
    MARKETPLACES,
    UnknownMarketplace,
    UnknownRegion,
    consent_url,
    find_marketplace,
    normalize_region,
    seller_central_for,
)
from tests.marketplaces.conftest import AMAZON_OAUTH, query_of

pytestmark = AMAZON_OAUTH


@pytest.mark.parametrize(
    ("value", "region", "host"),
    [
        ("US", "NA", "https://sellercentral.amazon.com"),
        ("ca", "NA", "https://sellercentral.amazon.ca"),
        ("MX", "NA", "https://sellercentral.amazon.com.mx"),
        ("BR", "NA", "https://sellercentral.amazon.com.br"),
        ("FR", "EU", "https://sellercentral-europe.amazon.com"),
        ("DE", "EU", "https://sellercentral-europe.amazon.com"),
        ("UK", "EU", "https://sellercentral-europe.amazon.com"),
        ("GB", "EU", "https://sellercentral-europe.amazon.com"),
        ("NL", "EU", "https://sellercentral.amazon.nl"),
        ("IN", "EU", "https://sellercentral.amazon.in"),
        ("AE", "EU", "https://sellercentral.amazon.ae"),
        ("JP", "FE", "https://sellercentral.amazon.co.jp"),
        ("AU", "FE", "https://sellercentral.amazon.com.au"),
        ("SG", "FE", "https://sellercentral.amazon.sg"),
        ("A13V1IB3VIYZZH", "EU", "https://sellercentral-europe.amazon.com"),  # France, by marketplace id
        ("ATVPDKIKX0DER", "NA", "https://sellercentral.amazon.com"),
        ("A1VC38T7YXB528", "FE", "https://sellercentral.amazon.co.jp"),
    ],
)
def test_marketplace_to_region_and_seller_central(value, region, host):
    marketplace = find_marketplace(value)
    assert marketplace.region == region
    assert seller_central_for(region=region, marketplace=marketplace) == host


def test_region_defaults_and_aliases():
    assert seller_central_for(region="NA") == "https://sellercentral.amazon.com"
    assert seller_central_for(region="EU") == "https://sellercentral-europe.amazon.com"
    assert seller_central_for(region="FE") == "https://sellercentral.amazon.co.jp"
    assert normalize_region("eu-west-1") == "EU"
    assert normalize_region("us-east-1") == "NA"
    assert normalize_region("us-west-2") == "FE"
    assert normalize_region(" fe ") == "FE"
    with pytest.raises(UnknownRegion):
        normalize_region("mars")
    with pytest.raises(UnknownMarketplace):
        find_marketplace("XX")


def test_every_marketplace_is_unique_and_https():
    ids = [m.marketplace_id for m in MARKETPLACES]
    assert len(ids) == len(set(ids))
    assert all(m.seller_central.startswith("https://sellercentral") for m in MARKETPLACES)


def test_consent_url_published_app():
    url = consent_url(
        base="https://sellercentral.amazon.com", application_id="amzn1.sp.solution.x", state="s1", draft=False
    )
    assert url.startswith("https://sellercentral.amazon.com/apps/authorize/consent?")
    assert query_of(url) == {"application_id": "amzn1.sp.solution.x", "state": "s1"}


def test_consent_url_draft_app_with_redirect_uri():
    url = consent_url(
        base="https://sellercentral-europe.amazon.com/",
        application_id="amzn1.sp.solution.x",
        state="s1",
        draft=True,
        redirect_uri="https://api.keybuzz.io/cb?x=1",
    )
    assert url.startswith("https://sellercentral-europe.amazon.com/apps/authorize/consent?")
    assert query_of(url) == {
        "application_id": "amzn1.sp.solution.x",
        "state": "s1",
        "version": "beta",
        "redirect_uri": "https://api.keybuzz.io/cb?x=1",
    }
