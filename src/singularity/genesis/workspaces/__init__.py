"""Workspaces: where runs happen: repositories opened, copied, patched, and cleaned up."""
