"""Choosing which job requests run next (priority, capacity, schedule time) and creating cron requests."""
