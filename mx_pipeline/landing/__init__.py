"""The landing area: what extraction read from MX, as Parquet, until the loader merges it into the warehouse.

Extraction never writes the warehouse. It lands each member's transaction pages as typed, judged rows
(``transactions.py``, judged by ``page_sql``), and each user's member list, member's status and account list as
rows judged by pandera (``records.py``); last, a manifest saying how the read ended. The loader
(``warehouse/landed.py``) merges whole reads in bulk and deletes what it committed. ``area.py`` is where the files
live: a local directory or any fsspec URL; ``parser.py``, the one thread that writes them.
"""

from mx_pipeline.landing.area import LandedMember, LandingArea

__all__ = ["LandedMember", "LandingArea"]
