"""Processes that read MX keep its limits together through Postgres, on a real PostgreSQL: one global budget
(pyrate-limiter's ``PostgresBucket``) and each user's and member's spacing (its GCRA on one row per key). Together
they never send more than the budget allows nor space a member's requests closer than one process would. What
they took is read from the database itself: triggers copy every request admitted and every slot taken.
"""

import itertools
import multiprocessing

from mx_pipeline.mx import RateLimits
from mx_pipeline.mx.rate_limit import RateLimiter
from mx_pipeline.mx.shared_budget import SharedBudget, SharedSpacing

LIMITS = RateLimits(requests_per_second=5, burst=5)  # at most 5 requests in any second
WINDOW = LIMITS.burst / LIMITS.requests_per_second
WORKERS, REQUESTS = 3, 8
STAMPED_BEFORE_WRITTEN = 0.1  # a request is stamped by Postgres's clock a round trip before it is written
NOTE_EACH_REQUEST = f"""
    create table requests_sent (at timestamp not null);
    create function note_request() returns trigger language plpgsql as $$
        begin insert into requests_sent values (new.item_timestamp); return new; end $$;
    create trigger note_request after insert on ratelimit___{SharedBudget.TABLE}
        for each row execute function note_request();
"""


def _spend(url: str, requests: int) -> None:
    budget = SharedBudget(url, LIMITS)
    for _ in range(requests):
        budget.acquire()
    budget.close()


def test_processes_spend_one_global_budget_between_them(postgres):
    database = postgres.create_database()
    url = postgres.url(database)
    SharedBudget(url, LIMITS).close()  # it made the bucket's table, for the trigger to watch
    postgres.execute(database, NOTE_EACH_REQUEST)

    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=_spend, args=(url, REQUESTS)) for _ in range(WORKERS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0] * WORKERS

    rows = postgres.query(database, "select extract(epoch from at)::float8 from requests_sent order by 1")
    sent = [at for (at,) in rows]
    assert len(sent) == WORKERS * REQUESTS
    for at in sent:  # in no window did the three together send more than the budget
        assert sum(at <= other < at + WINDOW - STAMPED_BEFORE_WRITTEN for other in sent) <= LIMITS.burst
    # 24 requests at 5 in any second take more than 3.7 s between them; on budgets of their own, about 1 s.
    assert sent[-1] - sent[0] >= (len(sent) / LIMITS.burst - 1) * WINDOW - STAMPED_BEFORE_WRITTEN


SPACED = RateLimits(requests_per_second=100, burst=100, per_user_interval=0.2, per_member_interval=0.3)
NOTE_EACH_SLOT = f"""
    create table slots_taken (key text not null, tat_us bigint not null);
    create function note_slot() returns trigger language plpgsql as $$
        begin insert into slots_taken values (new.key, new.tat_us); return new; end $$;
    create trigger note_slot after update on {SharedSpacing.TABLE} for each row execute function note_slot();
"""


def _read(url: str, member_guid: str, requests: int) -> None:
    limiter = RateLimiter.spending(SPACED, url)
    for _ in range(requests):
        limiter.acquire(user_guid="USR-1", member_guid=member_guid)
    SharedBudget.close_all()


def _slots(postgres, database: str, key: str) -> list[int]:
    rows = postgres.query(database, "select tat_us from slots_taken where key = %s order by tat_us", key)
    return [tat_us for (tat_us,) in rows]


def test_processes_keep_each_members_and_users_spacing_between_them(postgres):
    database = postgres.create_database()
    url = postgres.url(database)
    SharedBudget(url, SPACED).close()  # it made the spacing's table, for the trigger to watch
    postgres.execute(database, NOTE_EACH_SLOT)

    # Two runs read MBR-1 at once (4 requests each), a third reads MBR-2 of the same user.
    readers = [("MBR-1", 4), ("MBR-1", 4), ("MBR-2", 4)]
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=_read, args=(url, *reader)) for reader in readers]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0] * len(workers)

    # Every request took its slots (no update lost to a race), each a full interval after the one before.
    for key, requests, interval in [("member:MBR-1", 8, 0.3), ("member:MBR-2", 4, 0.3), ("user:USR-1", 12, 0.2)]:
        slots = _slots(postgres, database, key)
        assert len(slots) == requests
        assert min(later - earlier for earlier, later in itertools.pairwise(slots)) >= interval * 1e6


def test_a_request_held_back_by_one_key_takes_no_slot_of_the_others(postgres):
    budget = SharedBudget(postgres.url(postgres.create_database()), SPACED)
    try:
        assert budget.spacing.reserve([("member:A", 5.0)]) == 0
        wait = budget.spacing.reserve([("member:B", 5.0), ("member:A", 5.0)])
        assert 4.0 < wait <= 5.0
        assert budget.spacing.ready_in([("member:B", 5.0)]) == 0
        assert budget.spacing.reserve([("member:B", 5.0)]) == 0
        assert budget.spacing.ready_in([("member:B", 5.0)]) > 4.0
    finally:
        budget.close()


def test_an_aggregation_slot_is_taken_once_per_interval_whichever_worker_asks(postgres):
    url = postgres.url(postgres.create_database())
    budgets = [SharedBudget(url, SPACED), SharedBudget(url, SPACED)]  # two workers' own connections
    first, second = (RateLimiter(SPACED, shared=budget) for budget in budgets)
    three_hours = 3 * 3600.0
    try:
        assert first.take_once("aggregation:MBR-1", three_hours) == 0
        assert three_hours - 60 < second.take_once("aggregation:MBR-1", three_hours) <= three_hours
        assert first.take_once("aggregation:MBR-1", three_hours) > three_hours - 60  # nor the first again
        assert second.take_once("aggregation:MBR-2", three_hours) == 0  # each member's slot is its own
    finally:
        for budget in budgets:
            budget.close()
