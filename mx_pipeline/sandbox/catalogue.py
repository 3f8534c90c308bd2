"""Invented merchants and recurring payees the data generator draws from (names are fictional)."""

import uuid
from dataclasses import dataclass

_NAMESPACE = uuid.UUID("0b9e3c3c-52a4-4c55-8d8e-7a3a1f6c2d10")


@dataclass(frozen=True, slots=True)
class Merchant:
    guid: str
    name: str
    raw_descriptor: str  # what the bank feed says (original_description)
    category_name: str
    mcc: int | None
    low: float
    high: float
    website: str | None


def _merchant(name: str, raw: str, category: str, mcc: int | None, low: float, high: float) -> Merchant:
    slug = "".join(ch for ch in name.lower() if ch.isalnum())
    return Merchant(
        f"MCH-{uuid.uuid5(_NAMESPACE, name)}", name, raw, category, mcc, low, high, f"https://www.{slug}.com"
    )


# Everyday spending: (merchant, relative weight).
EVERYDAY = (
    (_merchant("Fresh Basket Market", "FRESH BASKET #{store} {city}", "Groceries", 5411, 18, 160), 9),
    (_merchant("Green Valley Grocers", "GREENVALLEY GRCR {store}", "Groceries", 5411, 12, 120), 6),
    (_merchant("Bean There Coffee", "SQ *BEAN THERE COFFEE", "Coffee Shops", 5814, 3.5, 14), 12),
    (_merchant("Burger Barn", "BURGERBARN {store} {city}", "Fast Food", 5814, 7, 28), 8),
    (_merchant("Trattoria Sole", "TST* TRATTORIA SOLE", "Restaurants", 5812, 24, 140), 4),
    (_merchant("Pho Corner", "PHO CORNER {city}", "Restaurants", 5812, 14, 60), 3),
    (_merchant("QuickFuel", "QUICKFUEL {store} {city}", "Gas", 5541, 25, 75), 5),
    (_merchant("City Parking Authority", "CITY PARKING METER {store}", "Parking", 7523, 2, 18), 3),
    (_merchant("RideNow", "RIDENOW *TRIP {store}", "Rental Car & Taxi", 4121, 8, 45), 3),
    (_merchant("Metro Transit", "METRO TRANSIT FARE", "Public Transportation", 4111, 2.5, 5), 5),
    (_merchant("Shopazon", "SHOPAZON MKTP US*{ref}", "Shopping", 5942, 9, 220), 6),
    # A warehouse club: MX files it under Shopping, though what people buy there is mostly food (the demo pins it).
    (_merchant("Costwise Wholesale", "COSTWISE WHSE #{store} {city}", "Shopping", 5300, 45, 260), 1),
    (_merchant("Threadline Apparel", "THREADLINE #{store}", "Clothing", 5651, 20, 180), 2),
    (_merchant("Circuit Hub", "CIRCUIT HUB {store}", "Electronics & Software", 5732, 15, 600), 1),
    (_merchant("CareRx Pharmacy", "CARERX PHARMACY #{store}", "Pharmacy", 5912, 6, 90), 2),
    (_merchant("Cinema Nine", "CINEMA 9 {city}", "Movies & DVDs", 7832, 11, 45), 1),
    (_merchant("Handy Hardware", "HANDY HARDWARE {store}", "Home Improvement", 5200, 8, 250), 1),
    (_merchant("Paper & Post", "PAPER&POST {store}", "Office Supplies", 5943, 5, 60), 1),
    (_merchant("Glow Salon", "GLOW SALON {city}", "Personal Care", 7230, 25, 120), 1),
    (_merchant("Happy Paws Pet Supply", "HAPPY PAWS PET {store}", "Pets", 5995, 12, 95), 1),
    (_merchant("Skyway Air", "SKYWAY AIR {ref}", "Air Travel", 4511, 120, 650), 0.3),
    (_merchant("Harbor Inn", "HARBOR INN {city}", "Hotel", 7011, 90, 400), 0.3),
    (_merchant("Giving Tree Foundation", "GIVINGTREE DONATION", "Charity", 8398, 10, 100), 0.4),
    (_merchant("ReWear Exchange", "REWEAR EXCHANGE {store}", "Secondhand & Resale", 5931, 8, 70), 0.8),
)

# Merchants whose purchases are sometimes returned (a refund: a credit at the same merchant some days later).
RETURNABLE_CATEGORIES = frozenset({"Shopping", "Clothing", "Electronics & Software", "Home Improvement"})

# Monthly bills and subscriptions: (merchant, day of month, kind). Each login draws its own amount in the range
# once; a utility bill then moves a little month to month, the others stay the same.
MONTHLY = (
    (_merchant("Brightwave Internet", "BRIGHTWAVE INTERNET AUTOPAY", "Internet", 4899, 59.99, 79.99), 5, "bill"),
    (_merchant("Cellular One Mobile", "CELL1 MOBILE BILL PAY", "Mobile Phone", 4814, 45, 95), 12, "bill"),
    (_merchant("City Power & Water", "CITY POWER WATER UTIL PMT", "Utilities", 4900, 60, 210), 18, "bill"),
    (_merchant("StreamFlix", "STREAMFLIX.COM", "Television", 4899, 15.49, 15.49), 9, "subscription"),
    (_merchant("Tunely", "TUNELY PREMIUM", "Music", 5815, 10.99, 10.99), 21, "subscription"),
    (_merchant("IronWorks Gym", "IRONWORKS GYM DUES", "Gym", 7997, 39, 39), 1, "subscription"),
    (_merchant("SafeRoad Insurance", "SAFEROAD INS PREM", "Auto Insurance", 6300, 92, 140), 15, "bill"),
)

EMPLOYERS = (
    "Northwind Traders",
    "Contoso Health",
    "Fabrikam Logistics",
    "Tailspin Software",
    "Wide World Importers",
)
LANDLORDS = ("Maple Court Apartments", "Riverside Property Mgmt", "Summit Home Loans")
CITIES = ("SALT LAKE CTY", "PROVO", "LEHI", "DENVER", "BOISE", "PHOENIX", "AUSTIN")

WAREHOUSE_CLUB = next(m for m, _ in EVERYDAY if m.name == "Costwise Wholesale")
MERCHANTS_BY_GUID: dict[str, Merchant] = {m.guid: m for m, _ in EVERYDAY} | {m.guid: m for m, _, _ in MONTHLY}


def merchant_json(merchant: Merchant) -> dict:
    """MX's MerchantResponse (merchant records predate the sandbox: fixed timestamps)."""
    return {
        "created_at": "2020-01-01T00:00:00Z",
        "guid": merchant.guid,
        "logo_url": f"https://content.mx.com/logos/merchants/{merchant.guid}.png",
        "name": merchant.name,
        "updated_at": "2020-01-01T00:00:00Z",
        "website_url": merchant.website,
    }
