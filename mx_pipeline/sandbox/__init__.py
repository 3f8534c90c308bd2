"""A local, spec-faithful fake of the MX Platform API (classic v20111101) with a clickable Connect page.

Start it with ``mx-pipeline sandbox`` (``server.serve``) or in-process with ``server.running_sandbox()``.
See README.md for endpoints, test credentials, webhooks, the admin hook and what is guessed.
"""
