"""Records to MX's JSON shapes (S11 *Response schemas): numbers as numbers, ISO 8601 ``Z`` timestamps."""

from mx_pipeline.sandbox.catalogue import MERCHANTS_BY_GUID
from mx_pipeline.sandbox.categories import CATEGORIES_BY_GUID
from mx_pipeline.sandbox.clock import iso
from mx_pipeline.sandbox.institutions import INSTITUTIONS, challenge_json, status_message
from mx_pipeline.sandbox.records import Account, Member, Transaction, User


def user_json(user: User) -> dict:
    return {
        "email": user.email,
        "guid": user.guid,
        "id": user.id,
        "is_disabled": user.is_disabled,
        "metadata": user.metadata,
    }


def member_json(member: Member, user: User) -> dict:
    """MemberResponse. ``most_recent_job_*`` are null: S11 types them boolean and MX's SDK is strict."""
    institution = INSTITUTIONS[member.institution_code]
    return {
        "aggregated_at": iso(member.aggregated_at),
        "background_aggregation_is_disabled": member.background_aggregation_is_disabled,
        "connection_status": member.connection_status.value,
        "connection_status_message": status_message(member.connection_status, institution),
        "guid": member.guid,
        "id": member.id,
        "institution_code": member.institution_code,
        "institution_guid": institution.guid,
        "is_being_aggregated": member.is_being_aggregated,
        "is_managed_by_user": False,
        "is_manual": False,
        "is_oauth": institution.supports_oauth,
        "metadata": member.metadata,
        "most_recent_job_detail_code": None,
        "most_recent_job_detail_text": None,
        "most_recent_job_guid": None,
        "name": institution.name,
        "needs_updated_credentials": member.needs_updated_credentials,
        "oauth_window_uri": None,
        "successfully_aggregated_at": iso(member.successfully_aggregated_at),
        "use_cases": member.use_cases or ["PFM"],
        "user_guid": member.user_guid,
        "user_id": user.id,
    }


def member_status_json(member: Member) -> dict:
    """MemberStatusResponse for GET .../status."""
    has_data = member.data is not None
    return {
        "aggregated_at": iso(member.aggregated_at),
        "challenges": [challenge_json(c) for c in member.challenges],
        "connection_status": member.connection_status.value,
        "guid": member.guid,
        "has_processed_account_numbers": has_data,
        "has_processed_accounts": has_data,
        "has_processed_transactions": has_data and member.include_transactions,
        "is_authenticated": member.successfully_aggregated_at is not None,
        "is_being_aggregated": member.is_being_aggregated,
        "successfully_aggregated_at": iso(member.successfully_aggregated_at),
    }


def account_json(account: Account, member: Member, user: User) -> dict:
    """AccountResponse with the core fields filled and the rest null (all nullable in S11)."""
    is_card = account.type == "CREDIT_CARD"
    available_balance = account.balance if account.type in ("CHECKING", "SAVINGS") else None
    return {
        "account_number": account.account_number,
        "apr": account.apr,
        "apy": account.apy,
        "available_balance": available_balance,
        "available_credit": round((account.credit_limit or 0) - account.balance, 2) if is_card else None,
        "balance": account.balance,
        "created_at": iso(account.created_at),
        "credit_limit": account.credit_limit,
        "currency_code": "USD",
        "guid": account.guid,
        "id": None,
        "imported_at": iso(account.imported_at),
        "institution_code": member.institution_code,
        "institution_guid": INSTITUTIONS[member.institution_code].guid,
        "interest_rate": account.interest_rate,
        "is_closed": False,
        "is_hidden": False,
        "is_manual": False,
        "member_guid": account.member_guid,
        "member_id": member.id,
        "member_is_managed_by_user": False,
        "metadata": None,
        "name": account.name,
        "nickname": None,
        "original_balance": account.original_balance,
        "routing_number": account.routing_number,
        "subtype": account.subtype,
        "type": account.type,
        "updated_at": iso(account.updated_at),
        "user_guid": account.user_guid,
        "user_id": user.id,
    }


def transaction_json(txn: Transaction, user: User, includes: frozenset[str] = frozenset()) -> dict:
    """TransactionIncludesResponse; ``includes=merchants`` adds the merchant object, other includes are null."""
    category = CATEGORIES_BY_GUID[txn.category_guid]
    is_credit = txn.type == "CREDIT"
    body = {
        "account_guid": txn.account_guid,
        "account_id": None,
        "amount": txn.amount,
        "category": category.name,
        "category_guid": category.guid,
        "check_number_string": None,
        "created_at": iso(txn.created_at),
        "currency_code": "USD",
        "date": txn.date.isoformat(),
        "description": txn.description,
        "extended_transaction_type": None,
        "guid": txn.guid,
        "id": None,
        "is_bill_pay": txn.kind == "bill",
        "is_direct_deposit": txn.kind == "payroll",
        "is_expense": not is_credit and txn.kind not in ("transfer",),
        "is_fee": txn.kind == "fee",
        "is_income": is_credit and txn.kind in ("payroll", "interest"),
        "is_international": False,
        "is_manual": False,
        "is_overdraft_fee": False,
        "is_payroll_advance": False,
        "is_recurring": None,
        "is_subscription": txn.kind == "subscription",
        "latitude": None,
        "localized_description": None,
        "localized_memo": None,
        "longitude": None,
        "member_guid": txn.member_guid,
        "member_is_managed_by_user": False,
        "memo": None,
        "merchant_category_code": txn.merchant_category_code,
        "merchant_guid": txn.merchant_guid,
        "merchant_location_guid": None,
        "metadata": None,
        "original_description": txn.original_description,
        "posted_at": iso(txn.posted_at),
        "status": txn.status,
        "top_level_category": category.top_level_name,
        "transacted_at": iso(txn.transacted_at),
        "type": txn.type,
        "updated_at": iso(txn.updated_at),
        "user_guid": txn.user_guid,
        "user_id": user.id,
        "classification": None,
        "geolocation": None,
        "merchant": None,
        "repeating_transaction": None,
    }
    if "merchants" in includes and txn.merchant_guid:
        merchant = MERCHANTS_BY_GUID[txn.merchant_guid]
        body["merchant"] = {
            "guid": merchant.guid,
            "logo_url": f"https://content.mx.com/logos/merchants/{merchant.guid}.png",
            "name": merchant.name,
            "website_url": merchant.website,
        }
    return body
