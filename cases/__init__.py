"""The case service: applies one workflow event to a case in one transaction (`cases.service`),
with the last committed snapshot kept per process (`cases.cache`).

Between storage (which it writes through) and the chat core (whose `Context` carries it), so the
router, the handlers and the app factory all reach it without importing upward.
"""
