"""Pure domain logic of the Queen: the job-definition language, the DAG, states and flow rules (no I/O)."""
