"""Test institutions, their credential fields, and what each test password or MFA answer leads to.

MX Bank (code ``mxbank``, username ``mxuser``) follows docs.mx.com/resources/test-platform/mxbank/ for the rows
MX publishes (research/mx_api.md section 6); every other password below is the sandbox's own, documented in
README.md. ``mxbank`` has "no aggregation limits" (MX); ``sandboxcu`` is a sandbox-only twin that applies the
~3 h aggregation throttle so clients can be tested against it. ``mxbank_oauth`` stands for MX's "MX Bank (OAuth)":
the user signs in on the bank's own authorization page instead of giving Connect credentials.
"""

from dataclasses import dataclass

from mx_pipeline.mx.statuses import ConnectionStatus
from mx_pipeline.sandbox.records import Challenge, Outcome

S = ConnectionStatus


@dataclass(frozen=True, slots=True)
class Institution:
    code: str
    guid: str
    name: str
    url: str
    has_aggregation_limits: bool
    supports_oauth: bool = False


INSTITUTIONS: dict[str, Institution] = {
    "mxbank": Institution("mxbank", "INS-1572a04c-912b-59bf-5841-332c7dfafaef", "MX Bank", "https://www.mx.com", False),
    "sandboxcu": Institution(
        "sandboxcu",
        "INS-5a1dc8a0-1f7c-4b43-9d1e-6f6c2b7e9c01",
        "Sandbox Credit Union (throttled)",
        "https://sandboxcu.example",
        True,
    ),
    "mxbank_oauth": Institution(
        "mxbank_oauth", "INS-b6c5a1e2-3f4d-4e8a-9c7b-0d2e1f3a4b5c", "MX Bank (OAuth)", "https://www.mx.com", False, True
    ),
}

# (field_name, label, type, display_order); the widget knows TEXT and PASSWORD field types (CW Credential.js).
CREDENTIAL_FIELDS = (("LOGIN", "Username", "TEXT", 1), ("PASSWORD", "Password", "PASSWORD", 2))
TEST_USERNAME = "mxuser"

# Passwords MX documents for MX Bank (case sensitive).
MX_DOCUMENTED_PASSWORDS: dict[str, Outcome] = {
    "challenge": Outcome(S.CHALLENGED, "TEXT"),
    "options": Outcome(S.CHALLENGED, "OPTIONS"),
    "image": Outcome(S.CHALLENGED, "IMAGE_DATA"),
    "BAD_REQUEST": Outcome(S.FAILED),
    "UNAUTHORIZED": Outcome(S.DENIED),  # MX's Atrium table for the same bank
}
# The sandbox's guesses for the rows MX's page did not show, plus one password per other status name.
SANDBOX_PASSWORDS: dict[str, Outcome] = {
    "INVALID": Outcome(S.DENIED),
    "SERVER_ERROR": Outcome(S.FAILED),
    "UNAVAILABLE": Outcome(S.DISCONNECTED),
} | {
    status.value: Outcome(status)
    for status in (
        S.LOCKED,
        S.IMPEDED,
        S.PREVENTED,
        S.DEGRADED,
        S.DISABLED,
        S.IMPAIRED,
        S.DISCONNECTED,
        S.DISCONTINUED,
        S.CLOSED,
        S.DELAYED,
        S.FAILED,
        S.DENIED,
        S.EXPIRED,
        S.REJECTED,
    )
}
# Sandbox: connects now, then answers every later aggregation with a text MFA challenge.
CHALLENGE_LATER_PASSWORD = "challenge_later"
MFA_CORRECT_ANSWER = "correct"


def credential_guid(institution: Institution, field_name: str) -> str:
    """Stable credential guid per institution and field (``CRD-`` prefix, S11 examples)."""
    suffix = institution.guid.removeprefix("INS-")
    return f"CRD-{field_name.lower()}-{suffix}"


def credentials_json(institution: Institution) -> list[dict]:
    """MX's CredentialResponse list for GET /institutions/{code}/credentials."""
    return [
        {
            "display_order": order,
            "field_name": name,
            "field_type": kind,
            "guid": credential_guid(institution, name),
            "label": label,
            "type": kind,
        }
        for name, label, kind, order in CREDENTIAL_FIELDS
    ]


def institution_json(institution: Institution) -> dict:
    """MX's InstitutionResponse."""
    return {
        "code": institution.code,
        "forgot_password_url": f"{institution.url}/forgot-password",
        "forgot_username_url": f"{institution.url}/forgot-username",
        "instructional_text": "Use username mxuser; the password chooses the outcome (see the sandbox README).",
        "instructional_text_steps": None,
        "is_disabled_by_client": False,
        "iso_country_code": "US",
        "medium_logo_url": f"https://content.mx.com/logos/institutions/100x100/{institution.guid}.png",
        "name": institution.name,
        "small_logo_url": f"https://content.mx.com/logos/institutions/50x50/{institution.guid}.png",
        "supports_account_identification": True,
        "supports_account_statement": False,
        "supports_account_verification": True,
        "supports_oauth": institution.supports_oauth,
        "supports_tax_document": False,
        "supports_transaction_history": True,
        "trouble_signing_in_url": f"{institution.url}/help",
        "url": institution.url,
    }


def outcome_for_credentials(credentials: dict[str, str]) -> Outcome:
    """Where an aggregation with these credentials ends (before any scripted override)."""
    if credentials.get("LOGIN") != TEST_USERNAME:
        return Outcome(S.DENIED)
    password = credentials.get("PASSWORD", "")
    return MX_DOCUMENTED_PASSWORDS.get(password) or SANDBOX_PASSWORDS.get(password) or Outcome(S.CONNECTED)


def outcome_for_answers(challenges: list[Challenge], answers: dict[str, str]) -> Outcome:
    """MX Bank MFA: ``correct`` passes, a server-error password fails, ``challenge`` to a text question asks a
    follow-up (MX's Atrium table), anything else is an incorrect answer (REJECTED)."""
    values = [answers.get(c.guid, "") for c in challenges]
    if any(v in ("SERVER_ERROR", "BAD_REQUEST") for v in values):
        return Outcome(S.FAILED)
    if all(v == MFA_CORRECT_ANSWER for v in values):
        return Outcome(S.CONNECTED)
    if all(v in (MFA_CORRECT_ANSWER, "challenge") for v in values) and challenges[0].kind == "TEXT":
        return Outcome(S.CHALLENGED, "TEXT")
    return Outcome(S.REJECTED)


_ONE_PIXEL_PNG = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def make_challenges(kind: str, new_guid) -> list[Challenge]:
    """MX-shaped challenges for an MFA kind; ``new_guid(prefix)`` mints guids."""
    if kind == "OPTIONS":
        options = [
            {"guid": new_guid("CRD"), "label": label, "value": value}
            for label, value in (("Correct answer", "correct"), ("Wrong answer", "wrong"))
        ]
        return [Challenge(new_guid("CRD"), "OPTIONS", "Choose the correct option.", "MFA_OPTIONS", options=options)]
    if kind == "IMAGE_DATA":
        return [
            Challenge(
                new_guid("CRD"),
                "IMAGE_DATA",
                "What do you see in this image? (answer: correct)",
                "MFA_IMAGE",
                image_data=_ONE_PIXEL_PNG,
            )
        ]
    return [Challenge(new_guid("CRD"), "TEXT", "What city were you born in? (answer: correct)", "MFA_TEXT")]


def challenge_json(challenge: Challenge) -> dict:
    """MX's ChallengeResponse."""
    return {
        "field_name": challenge.field_name,
        "guid": challenge.guid,
        "image_data": challenge.image_data,
        "image_options": [],
        "label": challenge.label,
        "options": challenge.options,
        "type": challenge.kind,
    }


STATUS_MESSAGES: dict[ConnectionStatus, str] = {
    S.CREATED: "Connecting to {name} ...",
    S.CONNECTED: "Connected to {name}.",
    S.CHALLENGED: "To authenticate your connection to {name}, please answer the following challenge(s).",
    S.DENIED: "The credentials entered do not match your credentials at {name}. Please re-enter your credentials.",
    S.REJECTED: "The answer or answers provided were incorrect. Please try again.",
    S.EXPIRED: "The answer or answers were not provided in time. Please try again.",
    S.LOCKED: "Your account is locked. Please log in to {name} and follow the steps to unlock it.",
    S.IMPEDED: "Your attention is needed at {name}. Please log in and resolve the issue.",
    S.PREVENTED: "Too many attempts with incorrect credentials. Please re-enter your credentials for {name}.",
    S.IMPAIRED: "You must re-authenticate before your data can be imported from {name}.",
    S.DEGRADED: "We are upgrading this connection. Please try again later.",
    S.DISABLED: "Importing data from {name} has been disabled. Please contact us if you believe this is an error.",
    S.DISCONNECTED: "There was a problem connecting to {name}. We are working to resolve the issue.",
    S.DISCONTINUED: "Connections to {name} are no longer supported.",
    S.CLOSED: "This connection has been closed.",
    S.DELAYED: "Importing your data from {name} may take a while. Please check back later.",
    S.FAILED: "There was a problem validating your credentials with {name}. Please try again later.",
    S.RESUMED: "The answer or answers have been received and are being processed.",
}


def status_message(status: ConnectionStatus, institution: Institution) -> str | None:
    """Human-readable ``connection_status_message`` (wording adapted from MX's Connect widget)."""
    template = STATUS_MESSAGES.get(status)
    return template.format(name=institution.name) if template else None
