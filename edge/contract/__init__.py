"""The contract between gateways and the data center, and the only code both sides import.

- ``protocol``: topics, framing, the batch, ack, status, command and presence codecs and their bounds, and the wire
  types (``Reading`` in a ``ReadingBatch``, ``Event`` in an ``EventBatch``).
- ``events``: every event kind a gateway records, each with its typed payload: the gateway builds an event's
  ``data`` with it, the data center reads it back with it (leniently: it never trusts a gateway).
- ``history``: the history export's tables (columns, resume keys), the spreadsheet guard, the ``after`` cursor and
  the formats, used by the API (its queries and OpenAPI row schemas) and by the agronomist's client alike.

Nothing here imports ``edge.gateway`` or ``edge.datacenter``; ``docs/protocol.md`` and ``docs/history.md`` are the
same in prose.
"""
