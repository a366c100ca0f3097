"""The Queen's side of the Ant stream: connected Ants, their capacity, and routing of task attempts."""
