"""The store boundary: everything rollguard keeps in Redis goes through this package.

- ``keys``: the one module that names every stream, key, consumer group and consumer;
- ``errors``: the one redis -> ``StoreError`` mapper (``redis_errors``, ``redis_boundary``);
- ``streams``: stream ids, consumer groups, retention that keeps unacknowledged entries;
- ``embedded``: the embedded Valkey server (the default when no ``store.redis_url`` is set);
- ``writer``: the buffered audit writer (``Store``), with its ``spill`` files.
"""

from gateway.store.embedded import EmbeddedValkey
from gateway.store.streams import parse_id
from gateway.store.writer import Store

__all__ = ["EmbeddedValkey", "Store", "parse_id"]
