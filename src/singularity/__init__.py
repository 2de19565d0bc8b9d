"""Singularity: run AI coding agents under human oversight, on durable PostgreSQL queues."""

__version__ = "0.1.0"
