"""Threads of one process writing the warehouse take turns: DuckDB would fail the second writer of a row."""

import threading

import duckdb

from mx_pipeline.warehouse import Warehouse


def test_a_second_thread_writing_the_same_row_waits_for_the_first_instead_of_conflicting(warehouse: Warehouse):
    with warehouse.connect() as con:
        con.execute("create table main.counter (id integer primary key, n integer)")
        con.execute("insert into main.counter values (1, 0)")
    second_tried, errors = threading.Event(), []

    def second_writer() -> None:
        try:
            with warehouse.connect() as con:
                con.execute("update main.counter set n = n + 1 where id = 1")
        except duckdb.Error as exc:  # DuckDB: "Conflict on tuple update" while the first transaction is open
            errors.append(exc)
        finally:
            second_tried.set()

    with warehouse.connect() as con:
        con.execute("begin")
        con.execute("update main.counter set n = n + 1 where id = 1")
        thread = threading.Thread(target=second_writer)
        thread.start()
        second_tried.wait(timeout=1.0)  # without a lock it tries (and fails) now; with one it waits for the commit
        con.execute("commit")
    thread.join(timeout=60)
    assert errors == []
    with warehouse.connect() as con:
        assert con.execute("select n from main.counter").fetchone() == (2,)


def test_a_thread_may_open_a_second_connection_while_it_holds_one(warehouse: Warehouse):
    with warehouse.connect() as outer, warehouse.connect() as inner:  # re-entrant: a helper's own short write
        inner.execute("create table main.t (x integer)")
        assert outer.execute("select count(*) from main.t").fetchone() == (0,)
