"""Integration tests of the Ant: executors on real processes, containers and servers; the stream
client against a fake Queen."""
