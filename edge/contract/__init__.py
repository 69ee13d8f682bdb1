"""The contract between gateways and the data center, and the only code both sides import.

``protocol``: topics, framing, the batch, ack, status, command and presence codecs and their bounds. What crosses
the line in any other form (event payloads the data center reads, the history export's columns and resume keys, the
API's rows) is defined here too, once, and both sides use the same definition.
"""
