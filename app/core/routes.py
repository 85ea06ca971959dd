"""Enumerate the app's API routes, whether FastAPI keeps included routers flat or lazy."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI
from fastapi.routing import APIRoute


def iter_api_routes(app: FastAPI) -> Iterator[APIRoute]:
    """Routers are included without a prefix, so each route's own path is its full path."""
    try:
        from fastapi.routing import iter_route_contexts  # type: ignore[attr-defined,unused-ignore]
    except ImportError:  # older FastAPI: included routes are flat
        for route in app.routes:
            if isinstance(route, APIRoute):
                yield route
        return
    for context in iter_route_contexts(app.routes):
        found = getattr(context, "original_route", None) or getattr(context, "route", None)
        if isinstance(found, APIRoute):
            yield found
