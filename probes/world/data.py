"""Data tables of the synthetic world: cities, IXPs, flagged carriers.

Coordinates are city centres written from general knowledge (about 0.01 degree
precision is plenty: RTTs are computed from them at 200 km/ms). Everything here is
constant data; nothing is computed at import time.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "City",
    "CITIES",
    "US_IXP_CITIES",
    "OTHER_IXP_CITIES",
    "FlaggedAS",
    "FLAGGED_ASES",
    "FAMILY_NAMES",
    "CONTINENT_NAMES",
    "MOAS_PREFIXES",
]


class City(NamedTuple):
    key: str  # short stable identifier, also used in router names
    name: str
    country: str  # ISO 3166 alpha-2
    continent: str  # NA SA EU AF AS OC
    lat: float
    lon: float


#: Every city of the world. Order matters for determinism: never re-sort.
CITIES: tuple[City, ...] = (
    # United States (IXP cities first)
    City("iad", "Ashburn", "US", "NA", 39.04, -77.49),
    City("nyc", "New York", "US", "NA", 40.71, -74.01),
    City("chi", "Chicago", "US", "NA", 41.88, -87.63),
    City("dfw", "Dallas", "US", "NA", 32.78, -96.80),
    City("lax", "Los Angeles", "US", "NA", 34.05, -118.24),
    City("sjc", "San Jose", "US", "NA", 37.34, -121.89),
    City("sea", "Seattle", "US", "NA", 47.61, -122.33),
    City("mia", "Miami", "US", "NA", 25.76, -80.19),
    City("atl", "Atlanta", "US", "NA", 33.75, -84.39),
    City("den", "Denver", "US", "NA", 39.74, -104.99),
    City("bos", "Boston", "US", "NA", 42.36, -71.06),
    City("phx", "Phoenix", "US", "NA", 33.45, -112.07),
    # rest of North America
    City("yyz", "Toronto", "CA", "NA", 43.65, -79.38),
    City("yvr", "Vancouver", "CA", "NA", 49.28, -123.12),
    City("mex", "Mexico City", "MX", "NA", 19.43, -99.13),
    # South America
    City("gru", "Sao Paulo", "BR", "SA", -23.55, -46.63),
    City("eze", "Buenos Aires", "AR", "SA", -34.60, -58.38),
    City("scl", "Santiago", "CL", "SA", -33.45, -70.67),
    City("bog", "Bogota", "CO", "SA", 4.71, -74.07),
    City("lim", "Lima", "PE", "SA", -12.05, -77.04),
    # Europe
    City("lon", "London", "GB", "EU", 51.51, -0.13),
    City("fra", "Frankfurt", "DE", "EU", 50.11, 8.68),
    City("ams", "Amsterdam", "NL", "EU", 52.37, 4.90),
    City("par", "Paris", "FR", "EU", 48.86, 2.35),
    City("sto", "Stockholm", "SE", "EU", 59.33, 18.07),
    City("mad", "Madrid", "ES", "EU", 40.42, -3.70),
    City("mil", "Milan", "IT", "EU", 45.46, 9.19),
    City("waw", "Warsaw", "PL", "EU", 52.23, 21.01),
    City("vie", "Vienna", "AT", "EU", 48.21, 16.37),
    City("mrs", "Marseille", "FR", "EU", 43.30, 5.37),
    # Middle East
    City("dxb", "Dubai", "AE", "AS", 25.20, 55.27),
    City("ist", "Istanbul", "TR", "EU", 41.01, 28.98),
    City("tlv", "Tel Aviv", "IL", "AS", 32.09, 34.78),
    # Africa
    City("jnb", "Johannesburg", "ZA", "AF", -26.20, 28.05),
    City("cpt", "Cape Town", "ZA", "AF", -33.92, 18.42),
    City("los", "Lagos", "NG", "AF", 6.52, 3.38),
    City("nbo", "Nairobi", "KE", "AF", -1.29, 36.82),
    City("cai", "Cairo", "EG", "AF", 30.04, 31.24),
    # Asia
    City("tyo", "Tokyo", "JP", "AS", 35.68, 139.69),
    City("osa", "Osaka", "JP", "AS", 34.69, 135.50),
    City("sel", "Seoul", "KR", "AS", 37.57, 126.98),
    City("hkg", "Hong Kong", "HK", "AS", 22.32, 114.17),
    City("sin", "Singapore", "SG", "AS", 1.35, 103.82),
    City("pek", "Beijing", "CN", "AS", 39.90, 116.41),
    City("sha", "Shanghai", "CN", "AS", 31.23, 121.47),
    City("can", "Guangzhou", "CN", "AS", 23.13, 113.26),
    City("tpe", "Taipei", "TW", "AS", 25.03, 121.57),
    City("bom", "Mumbai", "IN", "AS", 19.08, 72.88),
    City("maa", "Chennai", "IN", "AS", 13.08, 80.27),
    City("jkt", "Jakarta", "ID", "AS", -6.21, 106.85),
    City("bkk", "Bangkok", "TH", "AS", 13.76, 100.50),
    City("mnl", "Manila", "PH", "AS", 14.60, 120.98),
    City("kul", "Kuala Lumpur", "MY", "AS", 3.14, 101.69),
    # Oceania
    City("syd", "Sydney", "AU", "OC", -33.87, 151.21),
    City("akl", "Auckland", "NZ", "OC", -36.85, 174.76),
)

#: US cities that host a synthetic IXP ("SYN-IX <name>").
US_IXP_CITIES: tuple[str, ...] = ("iad", "nyc", "chi", "dfw", "lax", "sjc", "sea", "mia", "atl")

#: Non-US cities that host a synthetic IXP.
OTHER_IXP_CITIES: tuple[str, ...] = ("lon", "fra", "ams", "hkg", "tyo", "sin", "gru", "jnb")

CONTINENT_NAMES: dict[str, str] = {
    "NA": "North America",
    "SA": "South America",
    "EU": "Europe",
    "AF": "Africa",
    "AS": "Asia Pacific",
    "OC": "Australia",
}

FAMILY_NAMES: dict[str, str] = {
    "china-telecom": "China Telecom",
    "china-unicom": "China Unicom",
    "china-mobile": "China Mobile",
}


class FlaggedAS(NamedTuple):
    asn: int
    family: str
    name: str
    org_id: str  # as2org organisation (siblings may sit in different orgs, as in reality)
    org_name: str
    country: str
    role: str  # "backbone" (peers with tier-1s) or "arm" (customer of its family)
    provider: int | None  # family member it buys transit from (sibling link, p2c)
    cities: tuple[str, ...]
    ixp_cities: tuple[str, ...]  # where it holds member interfaces on the IXP LAN
    prefixes: tuple[str, ...]  # announced (pfx2as); the first holds router interfaces
    router_space: str | None  # unannounced router space (RIR delegated only)


#: The flagged families with their real ASNs. Prefixes: where a well-known real one is
#: given it is used (202.97.0.0/19 for AS4134, 219.158.0.0/17 for AS4837,
#: 223.120.128.0/17 for China Mobile, 59.43.0.0/16 CN2 router space); the others come
#: from the synthetic pool (``prefixes == ()``).
FLAGGED_ASES: tuple[FlaggedAS, ...] = (
    FlaggedAS(
        4134,
        "china-telecom",
        "CHINANET-BACKBONE",
        "CHINANET-AP",
        "China Telecom",
        "CN",
        "backbone",
        None,
        (
            "pek",
            "sha",
            "can",
            "hkg",
            "lax",
            "sjc",
            "sea",
            "iad",
            "nyc",
            "chi",
            "dfw",
            "mia",
            "fra",
            "lon",
            "tyo",
            "sin",
        ),
        ("lax", "sjc", "iad", "nyc", "chi", "dfw", "sea", "mia", "hkg", "fra"),
        ("202.97.0.0/19", "202.97.32.0/19"),
        None,
    ),
    FlaggedAS(
        4809,
        "china-telecom",
        "CHINATELECOM-CN2",
        "CHINANET-AP",
        "China Telecom",
        "CN",
        "backbone",
        4134,
        ("sha", "can", "pek", "hkg", "lax", "sjc", "tyo", "fra"),
        ("lax", "sjc", "hkg"),
        (),
        "59.43.0.0/16",
    ),
    FlaggedAS(
        23764,
        "china-telecom",
        "CTGNET",
        "CTA-ARIN",
        "China Telecom Americas",
        "US",
        "arm",
        4134,
        ("lax", "sjc", "iad", "nyc", "hkg"),
        ("lax", "sjc", "iad", "nyc"),
        (),
        None,
    ),
    FlaggedAS(
        4837,
        "china-unicom",
        "CHINA169-BACKBONE",
        "CNCGROUP-AP",
        "China Unicom",
        "CN",
        "backbone",
        None,
        ("pek", "sha", "can", "hkg", "lax", "tyo", "fra"),
        ("lax", "hkg"),
        ("219.158.0.0/17",),
        None,
    ),
    FlaggedAS(
        9929,
        "china-unicom",
        "CNCNET-CN",
        "CNCGROUP-AP",
        "China Unicom",
        "CN",
        "arm",
        4837,
        ("pek", "sha", "hkg", "lax"),
        ("lax",),
        (),
        None,
    ),
    FlaggedAS(
        10099,
        "china-unicom",
        "CUG-AS",
        "CUG-AP",
        "China Unicom Global",
        "HK",
        "arm",
        4837,
        ("hkg", "lax", "sjc", "iad", "nyc", "sea", "sin", "lon"),
        ("lax", "sjc", "iad", "nyc", "sea", "hkg", "sin", "lon"),
        (),
        None,
    ),
    FlaggedAS(
        9808,
        "china-mobile",
        "CMNET-GD",
        "CMCC-AP",
        "China Mobile",
        "CN",
        "arm",
        58453,
        ("pek", "sha", "can"),
        (),
        ("223.120.128.0/17",),
        None,
    ),
    FlaggedAS(
        58453,
        "china-mobile",
        "CMI-INT",
        "CMI-AP",
        "China Mobile International",
        "HK",
        "backbone",
        None,
        ("hkg", "sin", "lax", "mia", "fra", "lon", "tyo"),
        ("lax", "mia", "hkg", "sin", "fra", "lon", "tyo"),
        (),
        None,
    ),
    FlaggedAS(
        58807,
        "china-mobile",
        "CMIUS",
        "CMIUS-ARIN",
        "China Mobile International (USA)",
        "US",
        "arm",
        58453,
        ("lax", "sjc", "sea", "iad", "nyc", "hkg"),
        ("lax", "sjc", "sea", "iad", "nyc"),
        (),
        None,
    ),
)


#: Prefixes announced by more than one flagged AS (multi-origin in pfx2as, "a_b").
MOAS_PREFIXES: dict[str, tuple[int, ...]] = {"223.120.128.0/17": (9808, 58807)}
