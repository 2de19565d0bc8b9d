"""Experiments: a diff tried against a repository's tests on copies, a verdict, and its record."""
