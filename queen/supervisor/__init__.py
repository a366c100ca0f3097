"""Driving each job's DAG: the job supervisor, the task runner and the dispatch contract they use."""
