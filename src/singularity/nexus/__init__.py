"""Nexus: the LLM router and the human-in-the-loop web UI."""
