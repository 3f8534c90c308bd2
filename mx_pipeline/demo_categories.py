"""The categories the demo's product pins, so that a merchant override shows in the demo's data.

A warehouse club is where MX's taxonomy and a household's budget part ways: MX files Costwise Wholesale under
Shopping, while what people buy there is mostly food. The product pins the merchant to our groceries, as
``ops.merchant_category_overrides`` lets it (README "For analysts").
"""

from mx_pipeline.sandbox.catalogue import WAREHOUSE_CLUB
from mx_pipeline.warehouse import Warehouse

DEMO_MERCHANT_CATEGORIES = {WAREHOUSE_CLUB.guid: "food.groceries"}


def pin_demo_merchant_categories(warehouse: Warehouse) -> None:
    """Upsert the demo's merchant overrides (``set_at`` now, so the next model run re-reads those merchants)."""
    with warehouse.connect() as con:
        for merchant_guid, category_id in DEMO_MERCHANT_CATEGORIES.items():
            con.execute(
                """
                insert or replace into ops.merchant_category_overrides (merchant_guid, category_id, set_by, set_at)
                values (?, ?, 'demo', now())
                """,
                [merchant_guid, category_id],
            )
