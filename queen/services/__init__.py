"""The service layer: every rule of the public API, shared by the gRPC servicers and the REST gateway."""
