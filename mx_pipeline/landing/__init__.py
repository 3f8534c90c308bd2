"""The landing area: what extraction read from MX, as Parquet, until the loader merges it into the warehouse.

Extraction (``transactions.py``) never writes the warehouse: it lands each member's pages as typed, judged rows
(``page_sql``) and, last, a manifest saying how the read ended. The loader (``warehouse/landed.py``) merges whole
members in bulk and deletes what it committed. ``area.py`` is where the files live: a local directory or any
fsspec URL.
"""

from mx_pipeline.landing.area import LandedMember, LandingArea

__all__ = ["LandedMember", "LandingArea"]
