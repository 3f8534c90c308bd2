"""MX-shaped payloads for client tests, spelled as MX's spec and reference pages spell them.

Every builder returns an object that the contract fixture validates against the official spec whenever a
test serves it, so a typo here fails loudly instead of teaching the client a wrong shape.
"""

BASE_URL = "https://int-api.mx.com"
MX_MEDIA_TYPE = "application/vnd.mx.api.v1+json"
USER_GUID = "USR-fbfd3d4d-3a4c-4a2e-9b05-5b8ad7f0d8c3"
MEMBER_GUID = "MBR-7c6f361b-e582-15b6-60c0-358f12466b4b"
ACCOUNT_GUID = "ACT-06d7f44b-caae-0f6e-1384-01f52e75dcb1"


def user(guid: str = USER_GUID, id: str = "end-user-1") -> dict:
    return {"guid": guid, "id": id, "email": "someone@example.com", "is_disabled": False, "metadata": None}


def member(guid: str = MEMBER_GUID, status: str | None = "CONNECTED", aggregating: bool = False) -> dict:
    return {
        "aggregated_at": "2026-11-24T08:00:00Z",
        "background_aggregation_is_disabled": False,
        "connection_status": status,
        "connection_status_message": "Connected to MX Bank",
        "guid": guid,
        "id": None,
        "institution_code": "mxbank",
        "institution_guid": "INS-f1a3285d-e855-b68f-6aa7-8ae775c0e0e9",
        "is_being_aggregated": aggregating,
        "is_managed_by_user": False,
        "is_manual": False,
        "is_oauth": False,
        "metadata": None,
        # The spec types these boolean (a spec bug; MX's SDK is strict), so a faithful body sends null.
        "most_recent_job_detail_code": None,
        "most_recent_job_detail_text": None,
        "most_recent_job_guid": None,
        "name": "MX Bank",
        "needs_updated_credentials": False,
        "oauth_window_uri": None,
        "successfully_aggregated_at": "2026-11-24T08:01:00Z",
        "use_cases": ["PFM"],
        "user_guid": USER_GUID,
        "user_id": "end-user-1",
    }


def member_status(status: str = "CONNECTED", aggregating: bool = False, challenges: list | None = None) -> dict:
    return {
        "aggregated_at": "2026-11-24T08:00:00Z",
        "challenges": challenges or [],
        "connection_status": status,
        "guid": MEMBER_GUID,
        "has_processed_account_numbers": True,
        "has_processed_accounts": True,
        "has_processed_transactions": not aggregating,
        "is_authenticated": status == "CONNECTED",
        "is_being_aggregated": aggregating,
        "successfully_aggregated_at": "2026-11-24T08:01:00Z",
    }


def challenge(guid: str = "CRD-ce76d2e3-86bd-ec4a-ec52-eb53b5194bf5") -> dict:
    return {
        "field_name": None,
        "guid": guid,
        "label": "What city were you born in?",
        "type": "TEXT",
    }


def credential(guid: str, field_name: str, label: str, order: int, field_type: str = "TEXT") -> dict:
    return {
        "display_order": order,
        "field_name": field_name,
        "field_type": field_type,
        "guid": guid,
        "label": label,
        "type": field_type,
    }


def institution(code: str = "mxbank", name: str = "MX Bank") -> dict:
    return {
        "code": code,
        "forgot_password_url": None,
        "forgot_username_url": None,
        "instructional_text": None,
        "iso_country_code": "US",
        "medium_logo_url": None,
        "name": name,
        "small_logo_url": None,
        "supports_account_identification": True,
        "supports_account_statement": False,
        "supports_account_verification": True,
        "supports_oauth": False,
        "supports_tax_document": False,
        "supports_transaction_history": True,
        "trouble_signing_in_url": None,
        "url": "https://www.mx.com",
    }


def account(guid: str = ACCOUNT_GUID, balance: float = 1000.23) -> dict:
    return {
        "account_number": "5366",
        "available_balance": balance,
        "balance": balance,
        "created_at": "2026-01-15T12:00:00Z",
        "currency_code": "USD",
        "guid": guid,
        "id": None,
        "institution_code": "mxbank",
        "is_closed": False,
        "is_hidden": False,
        "member_guid": MEMBER_GUID,
        "name": "Checking",
        "subtype": "NONE",
        "type": "CHECKING",
        "updated_at": "2026-11-24T08:01:00Z",
        "user_guid": USER_GUID,
    }


def transaction(guid: str = "TRN-265abee9-889b-af6a-c69b-25157db2bdd9", amount: float = 61.11, **changes) -> dict:
    base = {
        "account_guid": ACCOUNT_GUID,
        "account_id": None,
        "amount": amount,
        "category": "Groceries",
        "category_guid": "CAT-b6d64a1e-bc43-a1ae-a2df-1e1a2d4d3b0a",
        "check_number_string": None,
        "created_at": "2026-11-20T13:00:00Z",
        "currency_code": "USD",
        "date": "2026-11-20",
        "description": "Whole Foods",
        "guid": guid,
        "is_expense": True,
        "is_income": False,
        "member_guid": MEMBER_GUID,
        "merchant_category_code": 5411,
        "merchant_guid": "MCH-7ed79542-884d-2b1b-dd74-501c5cc9d25b",
        "original_description": "WHOLEFDS MKT 10234 AUSTIN TX",
        "posted_at": "2026-11-21T12:00:00Z",
        "status": "POSTED",
        "top_level_category": "Food & Dining",
        "transacted_at": "2026-11-20T13:00:00Z",
        "type": "DEBIT",
        "updated_at": "2026-11-21T12:00:00Z",
        "user_guid": USER_GUID,
    }
    return base | changes


def category(guid: str, name: str, parent_guid: str | None = None) -> dict:
    return {
        "created_at": None,
        "guid": guid,
        "is_default": True,
        "is_income": False,
        "metadata": None,
        "name": name,
        "parent_guid": parent_guid,
        "updated_at": None,
    }


def pagination(page: int = 1, per_page: int = 1000, total_entries: int = 1, total_pages: int = 1) -> dict:
    return {"current_page": page, "per_page": per_page, "total_entries": total_entries, "total_pages": total_pages}


def listing(key: str, items: list, **page) -> dict:
    return {key: items, "pagination": pagination(total_entries=len(items), **page)}
