"""Unit tests of the Ant: pure logic, no sockets or subprocesses."""
