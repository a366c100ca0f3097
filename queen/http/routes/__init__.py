"""The REST gateway's routers, one module per resource; each is built from the services it calls."""
