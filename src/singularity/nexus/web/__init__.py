"""The web UI and REST API of Nexus."""
