"""The connect service: MX users, Connect widget URLs per mode, the Connect callback and MX webhooks.

It never opens the warehouse: everything it learns is appended to the durable spool, which the pipeline drains.
"""
