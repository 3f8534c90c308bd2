"""``MxClient``: one typed method per MX Platform API operation the project uses (classic v20111101).

Method names follow MX's operation ids (``listMembers`` -> ``list_members``); each docstring says what it
returns. List methods are lazy iterators over pages of ``records_per_page`` at the endpoint's maximum.
A record that breaks the contract raises :class:`MalformedRecord`, or is handed to ``on_malformed`` (and
skipped) when the caller passes one, so a pipeline can quarantine it without losing the rest of the page.
Reference: https://docs.mx.com/api-reference/platform-api/reference/
"""

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from mx_pipeline.mx.errors import OUTCOME_UNKNOWN, Conflict, MalformedRecord, MalformedResponse, Throttled
from mx_pipeline.mx.pagination import MAX_PER_PAGE, MAX_PER_PAGE_SMALL, Page, iter_pages, iter_records
from mx_pipeline.mx.records import (
    Account,
    Category,
    Challenge,
    Credential,
    Institution,
    Member,
    MemberStatus,
    Record,
    Transaction,
    User,
    WidgetUrl,
)
from mx_pipeline.mx.transport import Transport

R = TypeVar("R", bound=Record)
OnMalformed = Callable[[MalformedRecord], None]

USER = "/users/{user_guid}"
MEMBERS = USER + "/members"
MEMBER = MEMBERS + "/{member_guid}"
USER_CREATE_ATTEMPTS = 3  # creates of one user whose outcome stayed unknown, each followed by a look-up


class MxClient:
    """The MX Platform API. Thread-safe; share one per process (one pooled session, one rate limiter)."""

    def __init__(self, base_url: str, client_id: str, api_key: str, **transport_options: Any) -> None:
        """``transport_options`` go to :class:`Transport`: timeout, retry, limiter, observers, session."""
        self.transport = Transport(base_url, client_id, api_key, **transport_options)

    @classmethod
    def from_settings(cls, settings, **kwargs) -> "MxClient":
        """A client for :class:`mx_pipeline.settings.MxSettings` (the real MX or the built-in sandbox)."""
        return cls(settings.base_url, settings.client_id, settings.api_key, **kwargs)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> "MxClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # Users ---------------------------------------------------------------------------------------------

    def list_users(self, *, id: str | None = None, on_malformed: OnMalformed | None = None) -> Iterator[User]:
        """Every user of this client, or the one whose partner ``id`` is given."""
        return self._list("/users", {}, "users", User, params={"id": id}, on_malformed=on_malformed)

    def create_user(
        self, *, id: str, email: str | None = None, metadata: str | None = None, is_disabled: bool | None = None
    ) -> User:
        """Create a user (MX answers 200, not 201). Prefer :meth:`ensure_user`, which is idempotent."""
        body = {"user": _present(id=id, email=email, metadata=metadata, is_disabled=is_disabled)}
        return self._one("POST", "/users", {}, User, json_body=body, idempotent=False)

    def ensure_user(self, *, id: str, email: str | None = None, metadata: str | None = None) -> User:
        """The MX user for our user ``id``: found by ``?id=`` first, created only when absent.

        A create whose outcome is unknown (a 5xx, a connection dropped after sending, a garbled answer) may
        have made the user: the id is looked up again, and the create repeated (bounded) only if it is absent.
        """
        found = self._user_with_id(id)
        for attempt in range(1, USER_CREATE_ATTEMPTS + 1):
            if found is not None:
                return found
            if attempt > 1:
                self.transport.back_off(attempt - 1, "POST", "/users", "create outcome unknown and the user is absent")
            try:
                return self.create_user(id=id, email=email, metadata=metadata)
            except Conflict:  # another process created it between our look-up and our create
                if (found := self._user_with_id(id)) is None:
                    raise
            except OUTCOME_UNKNOWN:
                if (found := self._user_with_id(id)) is None and attempt == USER_CREATE_ATTEMPTS:
                    raise
        return found

    def _user_with_id(self, id: str) -> User | None:
        return next((u for u in self.list_users(id=id) if u.id == id), None)

    def read_user(self, user_guid: str) -> User:
        return self._one("GET", USER, {"user_guid": user_guid}, User, user_guid=user_guid)

    def update_user(
        self,
        user_guid: str,
        *,
        id: str | None = None,
        email: str | None = None,
        metadata: str | None = None,
        is_disabled: bool | None = None,
    ) -> User:
        body = {"user": _present(id=id, email=email, metadata=metadata, is_disabled=is_disabled)}
        return self._one("PUT", USER, {"user_guid": user_guid}, User, json_body=body, user_guid=user_guid)

    def delete_user(self, user_guid: str) -> None:
        """Delete a user and everything under it (204)."""
        self.transport.request("DELETE", USER, path_params={"user_guid": user_guid}, user_guid=user_guid)

    # Connect widget ------------------------------------------------------------------------------------

    def request_widget_url(
        self,
        user_guid: str,
        *,
        widget_type: str = "connect_widget",
        mode: str | None = None,
        current_member_guid: str | None = None,
        update_credentials: bool | None = None,
        current_institution_code: str | None = None,
        disable_institution_search: bool | None = None,
        include_transactions: bool | None = None,
        is_mobile_webview: bool | None = None,
        client_redirect_url: str | None = None,
        ui_message_webview_url_scheme: str | None = None,
        oauth_referral_source: str | None = None,
        color_scheme: str | None = None,
        ui_message_version: int = 4,
        language: str | None = None,
        callback_payload: str | None = None,
    ) -> WidgetUrl:
        """A single-use widget URL, valid for ten minutes: mint it when the page loads, never store it.

        ``current_member_guid`` opens Connect on that member (MFA or error view); add ``update_credentials``
        only when fresh credentials are needed (MX asks that it be used sparingly).
        """
        request = _present(
            widget_type=widget_type,
            mode=mode,
            current_member_guid=current_member_guid,
            update_credentials=update_credentials,
            current_institution_code=current_institution_code,
            disable_institution_search=disable_institution_search,
            include_transactions=include_transactions,
            is_mobile_webview=is_mobile_webview,
            client_redirect_url=client_redirect_url,
            ui_message_webview_url_scheme=ui_message_webview_url_scheme,
            oauth_referral_source=oauth_referral_source,
            color_scheme=color_scheme,
            ui_message_version=ui_message_version,
        )
        headers = _present(**{"Accept-Language": language, "X-CALLBACK-PAYLOAD": callback_payload})
        return self._one(
            "POST",
            USER + "/widget_urls",
            {"user_guid": user_guid},
            WidgetUrl,
            json_body={"widget_url": request},
            headers=headers,
            user_guid=user_guid,
            idempotent=True,  # minting a URL has no side effect a repeat could double
        )

    # Institutions --------------------------------------------------------------------------------------

    def list_institutions(self, *, name: str | None = None) -> Iterator[Institution]:
        return self._list(
            "/institutions", {}, "institutions", Institution, params={"name": name}, per_page=MAX_PER_PAGE_SMALL
        )

    def read_institution(self, institution_code: str) -> Institution:
        return self._one("GET", "/institutions/{institution_code}", {"institution_code": institution_code}, Institution)

    def list_institution_credentials(self, institution_code: str) -> list[Credential]:
        """The credential fields a member of this institution needs (guids for :meth:`create_member`)."""
        path = "/institutions/{institution_code}/credentials"
        return list(self._list(path, {"institution_code": institution_code}, "credentials", Credential))

    # Members -------------------------------------------------------------------------------------------

    def list_members(self, user_guid: str, *, on_malformed: OnMalformed | None = None) -> Iterator[Member]:
        return self._list(
            MEMBERS, {"user_guid": user_guid}, "members", Member, user_guid=user_guid, on_malformed=on_malformed
        )

    def create_member(
        self,
        user_guid: str,
        *,
        institution_code: str,
        credentials: Mapping[str, str],
        id: str | None = None,
        metadata: str | None = None,
        skip_aggregation: bool | None = None,
        background_aggregation_is_disabled: bool | None = None,
    ) -> Member:
        """Connect a member through the API; ``credentials`` maps credential guid -> value.

        MX validates the credentials and starts aggregating at once; poll :meth:`read_member_status`.
        A member with the same credentials at the same institution already exists -> :class:`Conflict`.
        """
        member = _present(
            institution_code=institution_code,
            credentials=[{"guid": guid, "value": value} for guid, value in credentials.items()],
            id=id,
            metadata=metadata,
            skip_aggregation=skip_aggregation,
            background_aggregation_is_disabled=background_aggregation_is_disabled,
        )
        return self._one(
            "POST", MEMBERS, {"user_guid": user_guid}, Member, json_body={"member": member}, user_guid=user_guid
        )

    def read_member(self, user_guid: str, member_guid: str) -> Member:
        return self._member_call("GET", MEMBER, user_guid, member_guid, Member)

    def update_member(
        self,
        user_guid: str,
        member_guid: str,
        *,
        credentials: Mapping[str, str] | None = None,
        id: str | None = None,
        metadata: str | None = None,
        skip_aggregation: bool | None = None,
    ) -> Member:
        """Update credentials (which starts an aggregation unless ``skip_aggregation``), id or metadata."""
        creds = [{"guid": g, "value": v} for g, v in credentials.items()] if credentials is not None else None
        body = {"member": _present(credentials=creds, id=id, metadata=metadata, skip_aggregation=skip_aggregation)}
        # A PUT by HTTP's rules, but one carrying credentials starts a job at the bank: a repeat after a 5xx
        # or a read timeout could sign in twice, so only id/metadata updates are retried.
        return self._member_call(
            "PUT", MEMBER, user_guid, member_guid, Member, json_body=body, idempotent=credentials is None
        )

    def delete_member(self, user_guid: str, member_guid: str) -> None:
        """Delete a member with its accounts and transactions (204)."""
        params = {"user_guid": user_guid, "member_guid": member_guid}
        self.transport.request("DELETE", MEMBER, path_params=params, user_guid=user_guid, member_guid=member_guid)

    def read_member_status(self, user_guid: str, member_guid: str) -> MemberStatus:
        """Connection status, aggregation progress and any MFA challenges: what to do next for a member."""
        return self._member_call("GET", MEMBER + "/status", user_guid, member_guid, MemberStatus)

    def aggregate_member(
        self, user_guid: str, member_guid: str, *, include_transactions: bool | None = None, at_most_every: float = 0
    ) -> Member:
        """Ask for a standard aggregation (202).

        MX may decline to start one when the data is recent (a ~3 h throttle) or when one is already running;
        either way it answers 202 with the member. A different job type running -> :class:`Conflict`. That throttle
        on our side: one request in ``at_most_every`` seconds across the processes sharing the rate budget (none
        without one); a request inside it is never sent: :class:`Throttled`."""
        if wait := self.transport.limiter.take_once(f"aggregation:{member_guid}", at_most_every):
            raise Throttled(member_guid, retry_after=wait)
        return self._member_call(
            "POST", MEMBER + "/aggregate", user_guid, member_guid, Member,
            params={"include_transactions": include_transactions},
            idempotent=True,  # a repeat joins the running job (202): nothing is doubled
        )  # fmt: skip

    def check_balances(self, user_guid: str, member_guid: str) -> Member:
        """Refresh balances only (202); lighter than an aggregation."""
        return self._member_call("POST", MEMBER + "/check_balance", user_guid, member_guid, Member, idempotent=True)

    def list_member_challenges(self, user_guid: str, member_guid: str) -> list[Challenge]:
        """The MFA questions of a CHALLENGED member; empty when it is not challenged (MX answers 204)."""
        params = {"user_guid": user_guid, "member_guid": member_guid}
        pages = self._list(MEMBER + "/challenges", params, "challenges", Challenge, user_guid=user_guid)
        return list(pages)

    def resume_aggregation(self, user_guid: str, member_guid: str, answers: Mapping[str, str]) -> Member:
        """Answer MFA challenges (challenge guid -> answer) and resume the job (202)."""
        challenges = [{"guid": guid, "value": value} for guid, value in answers.items()]
        body = {"member": {"challenges": challenges}}
        # Never repeated on doubt: a second delivery of MFA answers can count as a second (failed) attempt.
        return self._member_call(
            "PUT", MEMBER + "/resume", user_guid, member_guid, Member, json_body=body, idempotent=False
        )

    def list_member_credentials(self, user_guid: str, member_guid: str) -> list[Credential]:
        params = {"user_guid": user_guid, "member_guid": member_guid}
        return list(self._list(MEMBER + "/credentials", params, "credentials", Credential, user_guid=user_guid))

    # Accounts and transactions -------------------------------------------------------------------------

    def list_member_accounts(
        self, user_guid: str, member_guid: str, *, on_malformed: OnMalformed | None = None
    ) -> Iterator[Account]:
        params = {"user_guid": user_guid, "member_guid": member_guid}
        return self._list(
            MEMBER + "/accounts", params, "accounts", Account, user_guid=user_guid, on_malformed=on_malformed
        )

    def list_user_accounts(self, user_guid: str, *, on_malformed: OnMalformed | None = None) -> Iterator[Account]:
        return self._list(
            USER + "/accounts", {"user_guid": user_guid}, "accounts", Account, user_guid=user_guid,
            on_malformed=on_malformed,
        )  # fmt: skip

    def list_member_transactions(
        self, user_guid: str, member_guid: str, *, on_malformed: OnMalformed | None = None, **window: dt.date | None
    ) -> Iterator[Transaction]:
        """A member's transactions across its accounts, oldest page first (``window``: as for the pages)."""
        pages = self.list_member_transaction_pages(user_guid, member_guid, **window)
        return iter_records(pages, Transaction.from_payload, path=MEMBER + "/transactions", on_malformed=on_malformed)

    def list_member_transaction_pages(
        self,
        user_guid: str,
        member_guid: str,
        *,
        from_date: dt.date | None = None,
        to_date: dt.date | None = None,
        from_updated_at: dt.date | None = None,
        to_updated_at: dt.date | None = None,
    ) -> Iterator[Page]:
        """The same list as pages of unparsed objects, for a loader that validates a page at once.

        MX defaults ``from_date`` to 120 days ago and ``to_date`` to 5 days ahead (to catch pending ones).
        ``from_updated_at`` / ``to_updated_at`` select by last change (date precision, at most 6 months).
        """
        params = {"user_guid": user_guid, "member_guid": member_guid}
        query = {
            "from_date": _iso_date(from_date),
            "to_date": _iso_date(to_date),
            "from_updated_at": _iso_date(from_updated_at),
            "to_updated_at": _iso_date(to_updated_at),
        }
        return self._pages(MEMBER + "/transactions", params, "transactions", params=query, user_guid=user_guid)

    # Categories ----------------------------------------------------------------------------------------

    def list_default_categories(self) -> Iterator[Category]:
        """MX's default category taxonomy (it does not change; cache it)."""
        return self._list("/categories/default", {}, "categories", Category, per_page=MAX_PER_PAGE_SMALL)

    # Plumbing ------------------------------------------------------------------------------------------

    def _member_call(self, method, template, user_guid, member_guid, cls: type[R], **kwargs) -> R:
        params = {"user_guid": user_guid, "member_guid": member_guid}
        return self._one(method, template, params, cls, user_guid=user_guid, member_guid=member_guid, **kwargs)

    def _one(self, method: str, template: str, path_params: Mapping[str, str], cls: type[R], **kwargs) -> R:
        response = self.transport.request(method, template, path_params=path_params, **kwargs)
        body = response.body or {}
        if cls.envelope not in body:
            raise MalformedResponse(f"body lacks the {cls.envelope!r} envelope", method=method, path=template)
        try:
            return cls.from_payload(body[cls.envelope])
        except MalformedRecord as exc:
            exc.method, exc.path = method, template
            raise

    def _list(self, template: str, path_params, list_key: str, cls: type[R], *, on_malformed=None, **kw) -> Iterator[R]:
        pages = self._pages(template, path_params, list_key, **kw)
        return iter_records(pages, cls.from_payload, path=template, on_malformed=on_malformed)

    def _pages(
        self,
        template: str,
        path_params: Mapping[str, str],
        list_key: str,
        *,
        params: Mapping[str, Any] | None = None,
        per_page: int = MAX_PER_PAGE,
        user_guid: str | None = None,
    ) -> Iterator[Page]:
        member_guid = path_params.get("member_guid")

        def fetch(page: int) -> dict[str, Any] | None:
            query = {**(params or {}), "page": page, "records_per_page": per_page}
            response = self.transport.request(
                "GET", template, path_params=path_params, params=query, user_guid=user_guid, member_guid=member_guid
            )
            return response.body

        return (Page(items) for items in iter_pages(fetch, list_key, path=template))


def _present(**fields: Any) -> dict[str, Any]:
    """The fields that were given: MX treats an absent field and a null one differently."""
    return {k: v for k, v in fields.items() if v is not None}


def _iso_date(value: dt.date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        # MX's dates are UTC calendar days: an aware timestamp is moved to UTC before its date is taken.
        value = value.astimezone(dt.UTC).date() if value.tzinfo else value.date()
    return value.isoformat()
