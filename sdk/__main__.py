"""`python -m sdk ...` is the `formicary` command (how the embedded Queen starts its Ant child)."""

from sdk.cli import main

main()
