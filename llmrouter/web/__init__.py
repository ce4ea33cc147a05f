"""The aiohttp server: app factory, middleware, handlers, stream relay, dashboard."""
