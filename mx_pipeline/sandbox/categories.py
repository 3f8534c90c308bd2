"""MX's default category taxonomy: the 21 top levels plus a PARTIAL, clearly labelled subcategory list.

Top-level names: docs.mx.com categories reference (research/mx_api.md 2.7). Guids are MX's only where a source
shows them: Auto & Transport (S11 parameter examples, SDK fixtures), Paycheck and Rental Car & Taxi (S11 schema
examples). Every other guid is invented by the sandbox (stable uuid5 of the name) because MX's full 119-row list
has not been captured; subcategories beyond the ones MX's guide shows are the sandbox's picks.
"""

import uuid
from dataclasses import dataclass

_NAMESPACE = uuid.UUID("6f1d2a52-6a55-4b8e-9d7e-3e1f5c0b9a11")
KNOWN_MX_GUIDS = {
    "Auto & Transport": "CAT-7829f71c-2e8c-afa5-2f55-fa3634b89874",
    "Paycheck": "CAT-982ea9e6-3f0e-0c5b-611b-6657a10ba819",
    "Rental Car & Taxi": "CAT-9588eaad-90a4-bb5c-66c8-1812503d0db8",
}

TOP_LEVEL_NAMES = (
    "Auto & Transport",
    "Bills & Utilities",
    "Business Services",
    "Education",
    "Entertainment",
    "Fees & Charges",
    "Financial",
    "Food & Dining",
    "Gifts & Donations",
    "Health & Fitness",
    "Home",
    "Income",
    "Investments",
    "Kids",
    "Personal Care",
    "Pets",
    "Shopping",
    "Taxes",
    "Transfer",
    "Travel",
    "Uncategorized",
)

# Partial subcategory list (sandbox choice, see module docstring).
SUBCATEGORY_NAMES: dict[str, tuple[str, ...]] = {
    "Auto & Transport": (
        "Auto Insurance",
        "Auto Payment",
        "Gas",
        "Parking",
        "Public Transportation",
        "Rental Car & Taxi",
        "Service & Parts",
    ),
    "Bills & Utilities": ("Internet", "Mobile Phone", "Television", "Utilities"),
    "Business Services": ("Office Supplies", "Shipping"),
    "Education": ("Books & Supplies", "Student Loan"),
    "Entertainment": ("Movies & DVDs", "Music"),
    "Fees & Charges": ("ATM Fee", "Service Fee"),
    "Food & Dining": ("Coffee Shops", "Fast Food", "Groceries", "Restaurants"),
    "Gifts & Donations": ("Charity",),
    "Health & Fitness": ("Gym", "Pharmacy"),
    "Home": ("Home Improvement", "Mortgage & Rent"),
    "Income": ("Interest Income", "Paycheck"),
    "Shopping": ("Clothing", "Electronics & Software"),
    "Transfer": ("Credit Card Payment",),
    "Travel": ("Air Travel", "Hotel"),
}
# MX grows its taxonomy; our map (data/reference/mx_category_map.csv) names MX's 119 categories as they were when it
# was written. The sandbox adds one subcategory the map does not name, so that what a new MX category does is seen:
# it counts under its top level's category of ours, and the category_coverage check lists it for the map to learn.
NEWER_THAN_OUR_MAP = {"Shopping": ("Secondhand & Resale",)}


@dataclass(frozen=True, slots=True)
class Category:
    guid: str
    name: str
    parent_guid: str | None
    top_level_name: str
    is_income: bool


def _guid(name: str) -> str:
    return KNOWN_MX_GUIDS.get(name) or f"CAT-{uuid.uuid5(_NAMESPACE, name)}"


def _build() -> tuple[Category, ...]:
    result: list[Category] = []
    for top in TOP_LEVEL_NAMES:
        top_guid = _guid(top)
        result.append(Category(top_guid, top, None, top, top == "Income"))
        for sub in SUBCATEGORY_NAMES.get(top, ()) + NEWER_THAN_OUR_MAP.get(top, ()):
            result.append(Category(_guid(sub), sub, top_guid, top, top == "Income"))
    return tuple(result)


DEFAULT_CATEGORIES: tuple[Category, ...] = _build()
CATEGORIES_BY_NAME: dict[str, Category] = {c.name: c for c in DEFAULT_CATEGORIES}
CATEGORIES_BY_GUID: dict[str, Category] = {c.guid: c for c in DEFAULT_CATEGORIES}


def category_json(category: Category) -> dict:
    """MX's CategoryResponse for a default category (created_at/updated_at are null for defaults)."""
    return {
        "created_at": None,
        "guid": category.guid,
        "is_default": True,
        "is_income": category.is_income,
        "metadata": None,
        "name": category.name,
        "parent_guid": category.parent_guid,
        "updated_at": None,
    }
