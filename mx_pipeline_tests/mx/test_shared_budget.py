"""Processes that read MX spend one global budget through Postgres (pyrate-limiter's ``PostgresBucket``, on a real
PostgreSQL): together they never send more than the budget allows, where each alone would spend a budget of its
own. What they sent is read from the database itself: a trigger copies every request the bucket admits.
"""

import multiprocessing

from mx_pipeline.mx import RateLimits
from mx_pipeline.mx.rate_limit import SharedBudget

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
