"""The Ant: a worker that holds one gRPC stream to the Queen and runs tasks with its executors."""
