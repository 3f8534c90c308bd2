"""A list of MX's whose pages shift while it is read (a user registered, a member added between two pages) is read
again from page 1: only a list read whole may retire what it lacks, and a shift alone does not fail the read."""

from dataclasses import dataclass

from mx_pipeline.defs.ingest.listing import Listing
from mx_pipeline.mx.errors import ListShifted
from mx_pipeline.mx.pagination import LIST_READS


@dataclass(frozen=True)
class User:
    guid: str


class ShiftingList:
    """USR-1 on page 1, USR-2 on page 2; the first ``shifts`` reads find the list changed before page 2."""

    def __init__(self, shifts: int) -> None:
        self.shifts, self.reads = shifts, 0

    def __call__(self):
        self.reads += 1
        yield User("USR-1")
        if self.reads <= self.shifts:
            raise ListShifted("the list changed while it was read: 2 records on page 1, 3 on page 2")
        yield User("USR-2")


class Landing:
    def __init__(self) -> None:
        self.added, self.rejected = [], []

    def add(self, record) -> None:
        self.added.append(record.guid)

    def reject(self, error, member_guid=None) -> None:
        self.rejected.append(str(error))

    def reject_page(self, reason, member_guid=None) -> None:
        self.rejected.append(reason)


def test_a_list_whose_pages_shift_is_read_again_and_is_whole():
    records, landing = ShiftingList(shifts=LIST_READS - 1), Landing()
    listing = Listing(landing)
    listing.read(records)
    assert (listing.complete, listing.failure, records.reads) == (True, None, LIST_READS)
    assert listing.guids == {"USR-1", "USR-2"}
    assert set(landing.added) == {"USR-1", "USR-2"} and landing.rejected == []  # landed again: the load keeps one


def test_a_list_that_keeps_shifting_is_a_failed_incomplete_read():
    listing = Listing(Landing())
    listing.read(ShiftingList(shifts=LIST_READS))
    assert not listing.complete and isinstance(listing.failure, ListShifted)
