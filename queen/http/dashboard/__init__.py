"""The web dashboard: a page and its scripts served by the Queen; every datum comes from `/api`."""

from queen.http.dashboard.routes import dashboard_router

__all__ = ["dashboard_router"]
