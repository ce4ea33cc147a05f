"""``GET /admin/spend``: spend from the request log, plus each budgeted key's current period.

Query parameters: ``key`` (one key's name), ``since`` (see :func:`~llmrouter.keys.spend.parse_since`),
``group_by`` (``key``, ``provider`` or ``model``; default all three). The auth middleware only lets
the admin key through when ``[[keys]]`` exist.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from aiohttp import web

from llmrouter.errors import InvalidRequest, RouterError
from llmrouter.formats import CLIENT_FORMATS
from llmrouter.jsonutil import dumps
from llmrouter.keys.spend import GROUPS, parse_since, read_entries, summarize


def _error(error: RouterError) -> web.Response:
    return web.Response(status=error.status, body=dumps(CLIENT_FORMATS["openai"].render_error(error)),
                        content_type="application/json")


async def spend_handler(request: web.Request) -> web.Response:
    """Totals per key, provider and model over the request log, and the budgets' current spend."""
    from llmrouter.web.appkeys import CONFIG, LIMITER, PIPELINE

    config = request.app[CONFIG]
    query = request.query
    key = query.get("key") or None
    group_by = query.get("group_by") or None
    try:
        if group_by is not None and group_by not in GROUPS:
            raise InvalidRequest(f"group_by: expected one of {', '.join(GROUPS)}, got {group_by!r}")
        try:
            since = parse_since(query["since"]) if query.get("since") else None
        except ValueError as exc:
            raise InvalidRequest(f"since: {exc}") from None
        if not config.logging.enabled:
            raise InvalidRequest("spend is read from the request log, which is disabled ([logging] enabled = false)")
    except RouterError as exc:
        return _error(exc)
    request_log = request.app[PIPELINE].request_log
    loop = asyncio.get_running_loop()
    if request_log is not None:
        await loop.run_in_executor(None, request_log.wait_idle, 2.0)

    def compute() -> Any:
        try:
            return summarize(read_entries(config.logging.path), key=key, since=since)
        except FileNotFoundError:
            return summarize([], key=key, since=since)

    report = await loop.run_in_executor(None, compute)
    body: dict[str, Any] = {
        "key": key,
        "since": dt.datetime.fromtimestamp(since, dt.UTC).isoformat().replace("+00:00", "Z") if since is not None else None,
        "group_by": group_by,
        **report.as_dict([group_by] if group_by else GROUPS),
    }
    budgets = await request.app[LIMITER].budgets()
    body["budgets"] = {name: b for name, b in budgets.items() if key is None or name == key}
    return web.Response(body=dumps(body), content_type="application/json")
