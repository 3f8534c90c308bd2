"""One bad webhook never stops the others: every body MX can send goes receive -> spool -> drain without a wedge.

Whatever an authenticated delivery holds, the drain stores what is an event, quarantines the rest with the
reason and the exact bytes received (base64 when they are not UTF-8), acknowledges the batch and never raises;
the valid webhooks and Connect callbacks behind a bad one arrive. Only a warehouse error of ours keeps the
batch in the spool, for the next tick.
"""

import base64
import json
import uuid

import dagster as dg
import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from mx_pipeline import settings as pipeline_settings
from mx_pipeline.connect.app import create_app
from mx_pipeline.connect.links import ConnectIntent
from mx_pipeline.connect.spool import Spool
from mx_pipeline.connect.webhooks import WebhookReceiver
from mx_pipeline.defs.jobs import scoped_run_config
from mx_pipeline.defs.lifecycle import sensors
from mx_pipeline.defs.resources import RefreshPolicyResource, WarehouseResource
from mx_pipeline_tests.connect.conftest import WEBHOOK_PASSWORD, WEBHOOK_USER
from mx_pipeline_tests.connect.test_spool import Clock


def aggregation(member: str = "MBR-P", **fields) -> dict:
    return {"type": "AGGREGATION", "action": "member_data_updated", "user_guid": "USR-P", "member_guid": member,
            "completed_at": 1764072000} | fields  # fmt: skip


def connection_status(user_guid: str, member_guid: str) -> bytes:
    payload = {"type": "CONNECTION_STATUS", "action": "CHANGED", "connection_status": "CHALLENGED",
               "user_guid": user_guid, "member_guid": member_guid}  # fmt: skip
    return json.dumps(payload).encode()


def with_raw(payload: dict, field: str, raw_value: bytes) -> bytes:
    """``payload`` as JSON with ``field`` written as ``raw_value`` exactly (bytes json.dumps would never write)."""
    return json.dumps(payload | {field: "@@RAW@@"}).encode().replace(b'"@@RAW@@"', raw_value)


POISON = {
    "an integer past Python's 4,300-digit limit": (
        with_raw(aggregation(), "completed_at", b"9" * 4400),
        "not JSON: Exceeds the limit (4300 digits)",
    ),
    "deeply nested JSON": (
        with_raw(aggregation(), "extra", b"[" * 100_000 + b"]" * 100_000),
        "not JSON: nested too deeply",
    ),
    "an out-of-range completed_at": (
        json.dumps(aggregation(completed_at=10**20)).encode(),
        "AGGREGATION with completed_at out of range: 100000000000000000000",
    ),
    "a member guid that is not UTF-8": (
        with_raw(aggregation(), "member_guid", b'"MBR-\xff\xfe"'),
        "not UTF-8",
    ),
    "bytes that are neither UTF-8 nor JSON": (b"\xff\xd8\xff\xe0 a JPEG, say", "not UTF-8"),
    "a lone surrogate escape": (
        with_raw(aggregation(), "member_guid", b'"MBR-\\ud800"'),
        "AGGREGATION with a member_guid that is not valid Unicode (a lone surrogate)",
    ),
}


class TickingClock(Clock):
    """A test clock that moves a millisecond per reading: events are spooled in the order they arrive."""

    def __call__(self) -> int:
        self.advance(milliseconds=1)
        return self.ns


@pytest.fixture
def spool(tmp_path, monkeypatch) -> Spool:
    """The spool the connect service writes and the sensor drains (overrides the connect conftest's)."""
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path))
    clock = TickingClock()
    monkeypatch.setattr(sensors, "spool_clock", clock)
    return Spool(pipeline_settings.spool_dir(), clock=clock)


@pytest.fixture
def client(service, spool):
    with TestClient(create_app(service, WebhookReceiver(spool, WEBHOOK_USER, WEBHOOK_PASSWORD))) as client:
        yield client


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def drain(tmp_path, instance):
    """One tick of the ``connect_events`` sensor; the cursor carries over between calls."""
    resources = {
        "warehouse": WarehouseResource(path=str(tmp_path / "wh.duckdb")),
        "refresh_policy": RefreshPolicyResource(),
    }
    cursor = [None]

    def tick():
        context = dg.build_sensor_context(instance=instance, cursor=cursor[0], resources=resources)
        result = sensors.connect_events(context)
        if isinstance(result, dg.SensorResult):
            cursor[0] = result.cursor
        return result

    tick.warehouse = resources["warehouse"]
    return tick


def deliver(client: TestClient, body: bytes) -> None:
    response = client.post("/webhooks/mx", content=body, auth=(WEBHOOK_USER, WEBHOOK_PASSWORD))
    assert response.status_code == 204


def come_back_from_connect(client: TestClient, links, user_guid: str, member_guid: str) -> None:
    state = links.callback_state(ConnectIntent(f"end-user-{user_guid}", user_guid, "aggregation"))
    response = client.get("/connect/callback", params={"state": state, "member_guid": member_guid})
    assert response.status_code == 200


def member_events(warehouse: WarehouseResource) -> list[tuple]:
    with warehouse.open().connect() as con:
        return con.execute("select seq, event_key, source, member_guid from ops.member_events order by seq").fetchall()


def quarantine(warehouse: WarehouseResource) -> list[tuple[str, bytes]]:
    """(reason, the body's bytes as received) of every quarantined event."""
    with warehouse.open().connect() as con:
        rows = con.execute("select reason, payload from ops.quarantine order by reason").fetchall()
    return [(reason, quarantined_body(json.loads(payload))) for reason, payload in rows]


@pytest.mark.parametrize("poison", POISON.values(), ids=POISON.keys())
def test_a_bad_webhook_is_quarantined_and_the_events_behind_it_arrive(client, links, spool, drain, poison):
    body, reason = poison
    deliver(client, body)
    deliver(client, connection_status("USR-1", "MBR-1"))
    come_back_from_connect(client, links, "USR-2", "MBR-2")

    result = drain()

    assert [(source, member) for _, _, source, member in member_events(drain.warehouse)] == [
        ("CONNECTION_STATUS", "MBR-1"),
        ("connect_callback", "MBR-2"),
    ]
    [(quarantined_reason, raw)] = quarantine(drain.warehouse)
    assert quarantined_reason.startswith(f"mx_webhook: {reason}") and raw == body
    assert spool.pending() == []
    [run] = result.run_requests
    assert run.run_config == scoped_run_config(["USR-1", "USR-2"])

    stored, quarantined = member_events(drain.warehouse), quarantine(drain.warehouse)
    assert isinstance(drain(), dg.SkipReason)  # a second drain changes nothing
    assert (member_events(drain.warehouse), quarantine(drain.warehouse)) == (stored, quarantined)


def test_a_parser_failing_on_one_event_does_not_block_the_batch(client, spool, drain, monkeypatch):
    from mx_pipeline.warehouse import member_events as module

    parse = module.parse_webhook

    def parse_failing_on_mbr_2(body: str):
        if "MBR-2" in body:
            raise KeyError("a bug of ours, met on one event")
        return parse(body)

    monkeypatch.setattr(module, "parse_webhook", parse_failing_on_mbr_2)
    for member in ("MBR-1", "MBR-2", "MBR-3"):
        deliver(client, connection_status("USR-1", member))
    drain()
    assert [member for *_, member in member_events(drain.warehouse)] == ["MBR-1", "MBR-3"]
    [(reason, raw)] = quarantine(drain.warehouse)
    assert reason == "mx_webhook: could not be parsed: KeyError: 'a bug of ours, met on one event'"
    assert raw == connection_status("USR-1", "MBR-2")
    assert spool.pending() == []


def test_a_warehouse_error_of_ours_keeps_the_batch_in_the_spool_for_the_next_tick(client, spool, drain):
    deliver(client, POISON["deeply nested JSON"][0])
    deliver(client, connection_status("USR-1", "MBR-1"))
    drain()  # creates the warehouse
    deliver(client, connection_status("USR-2", "MBR-2"))
    deliver(client, b"\xff not JSON")
    with drain.warehouse.open().connect() as con:
        con.execute("alter table ops.member_events rename to member_events_away")

    with pytest.raises(duckdb.CatalogException, match="member_events"):
        drain()
    assert len(spool.pending()) == 2  # nothing acknowledged, nothing stored half-way
    assert len(quarantine(drain.warehouse)) == 1

    with drain.warehouse.open().connect() as con:
        con.execute("alter table ops.member_events_away rename to member_events")
    drain()
    assert [member for *_, member in member_events(drain.warehouse)] == ["MBR-1", "MBR-2"]
    assert sorted(raw for _, raw in quarantine(drain.warehouse)) == [POISON["deeply nested JSON"][0], b"\xff not JSON"]
    assert spool.pending() == []


# --- the property: whatever arrives, the valid events behind it arrive ----------------------------------------

VALID_WEBHOOK, VALID_CALLBACK = "a valid webhook", "a valid Connect callback"
lone_surrogates = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff", "\udcff"])
text = st.lists(st.one_of(st.text(max_size=8), lone_surrogates), max_size=3).map("".join)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
webhook_like = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["CONNECTION_STATUS", "AGGREGATION", "HISTORY", "MEMBER_DELETED"]) | json_values,
        "user_guid": st.just("USR-H") | json_values,
        "member_guid": st.just("MBR-H") | json_values,
    },
    optional={
        "connection_status": st.just("CHALLENGED") | json_values,
        "completed_at": st.integers() | st.integers(min_value=-(10**30), max_value=10**30) | json_values,
    },
)
json_bodies = st.one_of(json_values, webhook_like).map(lambda value: json.dumps(value).encode())
not_utf8 = st.tuples(json_bodies, st.binary(min_size=1, max_size=3).filter(lambda b: not _is_utf8(b))).map(
    lambda pair: pair[0][:1] + pair[1] + pair[0][1:]
)
poison_bodies = st.sampled_from([body for body, _ in POISON.values()])
bodies = st.one_of(st.binary(max_size=200), json_bodies, not_utf8, poison_bodies)
deliveries = st.lists(st.one_of(st.just(VALID_WEBHOOK), st.just(VALID_CALLBACK), bodies), max_size=8)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def snapshot(warehouse: WarehouseResource, *, clear: bool = False) -> tuple[list[tuple], list[tuple[str, bytes]]]:
    """The stored member events and the quarantined events (reason, bytes); ``clear`` empties both first."""
    with warehouse.open().connect() as con:
        if clear:
            con.execute("delete from ops.member_events; delete from ops.quarantine")
        stored = con.execute("select event_key, member_guid from ops.member_events order by seq").fetchall()
        rows = con.execute("select reason, payload from ops.quarantine").fetchall()
    return stored, [(reason, quarantined_body(json.loads(payload))) for reason, payload in rows]


# The fixtures' spool, warehouse and connect service serve every example (a fresh set each would take seconds):
# each example starts from empty tables, a month after the last, so the spool takes nothing for a redelivery.
@settings(
    max_examples=15,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(deliveries=deliveries)
def test_whatever_arrives_every_valid_event_behind_it_is_stored_once(client, links, spool, drain, deliveries):
    spool._clock.advance(days=30)
    spool.acknowledge(spool.pending())  # what a failed example left behind: a replay must start alike
    snapshot(drain.warehouse, clear=True)
    valid_members, delivered = [], []
    for item in deliveries:
        member = f"MBR-valid-{uuid.uuid4().hex}"
        if item == VALID_WEBHOOK:
            deliver(client, connection_status("USR-valid", member))
            valid_members.append(member)
        elif item == VALID_CALLBACK:
            come_back_from_connect(client, links, "USR-valid", member)
            valid_members.append(member)
        else:
            deliver(client, item)
            delivered.append(item)
    spooled = spool.pending()
    spooled_bodies = [raw(event) for event in spooled]
    assert set(delivered) <= set(spooled_bodies)  # nothing lost on receipt

    drain()

    assert spool.pending() == []
    stored, quarantined = snapshot(drain.warehouse)
    assert [member for _, member in stored if member.startswith("MBR-valid-")] == valid_members  # each once
    stored_keys, quarantined_bodies = {key for key, _ in stored}, [body for _, body in quarantined]
    for event, body in zip(spooled, spooled_bodies, strict=True):
        if body in POISON_BODIES or not _is_utf8(body):
            assert body in quarantined_bodies, event
        else:
            assert event.key in stored_keys or body in quarantined_bodies, event  # stored, or kept with a reason
    assert set(quarantined_bodies) <= set(spooled_bodies)


POISON_BODIES = {body for body, _ in POISON.values()}


def quarantined_body(payload: dict) -> bytes:
    """The bytes received, from a quarantined event's payload: ``body`` when UTF-8, else ``body_base64``."""
    return payload["body"].encode() if "body" in payload else base64.b64decode(payload["body_base64"], validate=True)


def raw(event) -> bytes:
    """A spooled event's body as the bytes received (the spool keeps non-UTF-8 bytes as surrogate escapes)."""
    return event.body.encode("utf-8", errors="surrogateescape")
