"""The data-center side: a source of gateways' messages (MQTT), the collector into PostgreSQL, and the history API.

Installed with the ``datacenter`` extra (``pip install .[datacenter]``) so a gateway never needs psycopg. It talks to
gateways only through :mod:`edge.contract` and imports no ``edge.gateway`` module (its config neither).
"""
