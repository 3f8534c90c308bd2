"""Whether the connect service can open the links this pipeline issues: the same link secret, the same link store.

Run with a different ``MX_PIPELINE_LINK_SECRET`` or ``MX_PIPELINE_DATA_DIR``, every link a notification carries
fails. The connect service shows its link key id and link store id on ``/healthz`` (ids, no secrets, no paths);
this check compares them with the pipeline's own. It never blocks: an unreachable service is only said.
"""

import dagster as dg
import requests

from mx_pipeline.defs.lifecycle.gate import RECONNECT_NOTIFICATIONS
from mx_pipeline.defs.resources import ConnectLinksResource

HEALTHZ_TIMEOUT_SECONDS = 3.0
NAMES = {
    "link_key_id": "link secret (MX_PIPELINE_LINK_SECRET, or .link_secret in the data directory)",
    "link_store_id": "link store (links.sqlite in MX_PIPELINE_DATA_DIR)",
}


def compare_link_identities(ours: dict[str, str], theirs: dict) -> list[str]:
    """What differs between the pipeline's link identity and the connect service's, in words."""
    return [
        f"the {name} differs: the pipeline's {key} is {ours[key]!r}, the connect service's is {theirs.get(key)!r}"
        for key, name in NAMES.items()
        if theirs.get(key) != ours[key]
    ]


@dg.asset_check(
    asset=RECONNECT_NOTIFICATIONS,
    blocking=False,
    description="The connect service opens the links this pipeline issues: same link secret, same link store.",
)
def connect_service_opens_our_links(connect_links: ConnectLinksResource) -> dg.AssetCheckResult:
    ours, url = connect_links.links().identity, f"{connect_links.service_url()}/healthz"
    metadata = {"healthz": url, **ours}
    try:
        response = requests.get(url, timeout=HEALTHZ_TIMEOUT_SECONDS)
        response.raise_for_status()
        theirs = response.json()
    except (requests.RequestException, ValueError) as exc:
        said = f"the connect service was not reachable at {url} ({type(exc).__name__}); links not compared"
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN, description=said,
                                   metadata=metadata)  # fmt: skip
    differences = compare_link_identities(ours, theirs if isinstance(theirs, dict) else {})
    return dg.AssetCheckResult(
        passed=not differences,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(differences) or "the connect service uses the same link secret and link store",
        metadata=metadata | {"differences": dg.MetadataValue.json(differences)},
    )
