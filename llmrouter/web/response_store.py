"""Conversations kept for the Responses API's ``previous_response_id`` (``[responses] store = true``).

A store maps a response id to the canonical conversation that ended with that response: the system
parts that came as input items (``instructions`` are not carried over, as with OpenAI) and the
messages, the reply included. :class:`ResponseStore` is the interface (defined next to the format
that uses it, :mod:`llmrouter.formats.responses_items`, and re-exported here);
:class:`MemoryResponseStore` keeps the most recent ``max_stored`` conversations in this process. A
shared store (Redis) only has to implement the same two methods.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from llmrouter.formats.responses_items import ResponseStore, StoredConversation
from llmrouter.models import Message, TextPart

__all__ = ["MemoryResponseStore", "ResponseStore", "StoredConversation"]


class MemoryResponseStore:
    """The most recent ``max_stored`` conversations, in memory, least recently used evicted first."""

    def __init__(self, max_stored: int) -> None:
        self.max_stored = max_stored
        self._items: OrderedDict[str, StoredConversation] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, response_id: str) -> StoredConversation | None:
        """A deep copy of the stored conversation, so a continuing request cannot alter it."""
        with self._lock:
            stored = self._items.get(response_id)
            if stored is None:
                return None
            self._items.move_to_end(response_id)
        return StoredConversation(system=[p.model_copy(deep=True) for p in stored.system],
                                  messages=[m.model_copy(deep=True) for m in stored.messages])

    def put(self, response_id: str, system: list[TextPart], messages: list[Message]) -> None:
        """Keep copies of ``system`` and ``messages``; evict the oldest beyond ``max_stored``."""
        stored = StoredConversation(system=[p.model_copy(deep=True) for p in system],
                                    messages=[m.model_copy(deep=True) for m in messages])
        with self._lock:
            self._items[response_id] = stored
            self._items.move_to_end(response_id)
            while len(self._items) > self.max_stored:
                self._items.popitem(last=False)
