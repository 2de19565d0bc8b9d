"""Singularity: agents that carry coding tasks through model calls, sandboxed validation and
human approval, asking the other services only through the bus."""
