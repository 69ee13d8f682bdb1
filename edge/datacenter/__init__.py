"""The data-center side: the MQTT collector into PostgreSQL (and, later, the history API).

Installed with the ``datacenter`` extra (``pip install .[datacenter]``) so a gateway never needs psycopg. It talks to
gateways only through :mod:`edge.contract.protocol`.
"""
