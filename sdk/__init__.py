"""The Formicary Python SDK: a typed client over the generated gRPC stubs, and the `formicary` command."""

__all__: list[str] = []
