"""Amazon marketplaces, their SP-API selling region and the Seller Central host a seller of that
marketplace authorizes apps on (Amazon's "Seller Central URLs" table).

The website authorization workflow sends the seller to
`<seller central host>/apps/authorize/consent?application_id=…&state=…[&version=beta][&redirect_uri=…]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

NA, EU, FE = "NA", "EU", "FE"

CONSENT_PATH = "/apps/authorize/consent"


@dataclass(frozen=True)
class Marketplace:
    country: str  # ISO 3166 alpha-2, as Amazon's tables use it (GB for the UK)
    marketplace_id: str
    region: str
    seller_central: str  # scheme + host, no trailing slash
    name: str


_EUROPE = "https://sellercentral-europe.amazon.com"

MARKETPLACES: tuple[Marketplace, ...] = (
    # North America
    Marketplace("CA", "A2EUQ1WTGCTBG2", NA, "https://sellercentral.amazon.ca", "Canada"),
    Marketplace("US", "ATVPDKIKX0DER", NA, "https://sellercentral.amazon.com", "United States"),
    Marketplace("MX", "A1AM78C64UM0Y8", NA, "https://sellercentral.amazon.com.mx", "Mexico"),
    Marketplace("BR", "A2Q3Y263D00KWC", NA, "https://sellercentral.amazon.com.br", "Brazil"),
    # Europe (the unified European account authorizes on sellercentral-europe)
    Marketplace("IE", "A28R8C7NBKEWEA", EU, "https://sellercentral.amazon.ie", "Ireland"),
    Marketplace("ES", "A1RKKUPIHCS9HS", EU, _EUROPE, "Spain"),
    Marketplace("GB", "A1F83G8C2ARO7P", EU, _EUROPE, "United Kingdom"),
    Marketplace("FR", "A13V1IB3VIYZZH", EU, _EUROPE, "France"),
    Marketplace("BE", "AMEN7PMS3EDWL", EU, "https://sellercentral.amazon.com.be", "Belgium"),
    Marketplace("NL", "A1805IZSGTT6HS", EU, "https://sellercentral.amazon.nl", "Netherlands"),
    Marketplace("DE", "A1PA6795UKMFR9", EU, _EUROPE, "Germany"),
    Marketplace("IT", "APJ6JRA9NG5V4", EU, _EUROPE, "Italy"),
    Marketplace("SE", "A2NODRKZP88ZB9", EU, "https://sellercentral.amazon.se", "Sweden"),
    Marketplace("ZA", "AE08WJ6YKNBMC", EU, "https://sellercentral.amazon.co.za", "South Africa"),
    Marketplace("PL", "A1C3SOZRARQ6R3", EU, "https://sellercentral.amazon.pl", "Poland"),
    Marketplace("EG", "ARBP9OOSHTCHU", EU, "https://sellercentral.amazon.eg", "Egypt"),
    Marketplace("TR", "A33AVAJ2PDY3EV", EU, "https://sellercentral.amazon.com.tr", "Turkey"),
    Marketplace("SA", "A17E79C6D8DWNP", EU, "https://sellercentral.amazon.sa", "Saudi Arabia"),
    Marketplace("AE", "A2VIGQ35RCS4UG", EU, "https://sellercentral.amazon.ae", "United Arab Emirates"),
    Marketplace("IN", "A21TJRUUN4KGV", EU, "https://sellercentral.amazon.in", "India"),
    # Far East
    Marketplace("SG", "A19VAU5U5O7RUS", FE, "https://sellercentral.amazon.sg", "Singapore"),
    Marketplace("AU", "A39IBJ37TRP1C6", FE, "https://sellercentral.amazon.com.au", "Australia"),
    Marketplace("JP", "A1VC38T7YXB528", FE, "https://sellercentral.amazon.co.jp", "Japan"),
)

# Where a seller is sent when only the region is known (no marketplace chosen).
REGION_SELLER_CENTRAL = {
    NA: "https://sellercentral.amazon.com",
    EU: _EUROPE,
    FE: "https://sellercentral.amazon.co.jp",
}

# The app's region may be written as an SP-API region or as the AWS region of its endpoint.
_REGION_ALIASES = {
    "na": NA,
    "us-east-1": NA,
    "eu": EU,
    "eu-west-1": EU,
    "fe": FE,
    "us-west-2": FE,
}

_BY_COUNTRY = {m.country: m for m in MARKETPLACES}
_BY_COUNTRY["UK"] = _BY_COUNTRY["GB"]  # Amazon's own tables say UK
_BY_ID = {m.marketplace_id: m for m in MARKETPLACES}


class UnknownMarketplace(ValueError):
    pass


class UnknownRegion(ValueError):
    pass


def normalize_region(value: str) -> str:
    """NA, EU or FE from an SP-API region name or an AWS region; raises UnknownRegion."""
    region = _REGION_ALIASES.get(value.strip().lower())
    if region is None:
        raise UnknownRegion(f"Unknown Amazon region {value!r}: use NA, EU or FE (or us-east-1, eu-west-1, us-west-2)")
    return region


def find_marketplace(value: str) -> Marketplace:
    """A marketplace from its country code (`FR`, `us`, `UK`) or its marketplace id (`A13V1IB3VIYZZH`)."""
    key = value.strip()
    found = _BY_COUNTRY.get(key.upper()) or _BY_ID.get(key.upper())
    if found is None:
        raise UnknownMarketplace(
            f"Unknown Amazon marketplace {value!r}: use a country code such as FR, US or JP, or a marketplace id"
        )
    return found


def seller_central_for(*, region: str, marketplace: Marketplace | None = None) -> str:
    return marketplace.seller_central if marketplace is not None else REGION_SELLER_CENTRAL[region]


def consent_url(*, base: str, application_id: str, state: str, draft: bool, redirect_uri: str = "") -> str:
    """The authorization URI of the website workflow. `base` is a Seller Central origin (or the local
    fake consent page's prefix in mock mode)."""
    params = {"application_id": application_id, "state": state}
    if draft:
        params["version"] = "beta"  # an app still in draft status is authorized with version=beta
    if redirect_uri:
        params["redirect_uri"] = redirect_uri
    return f"{base.rstrip('/')}{CONSENT_PATH}?{urlencode(params)}"
