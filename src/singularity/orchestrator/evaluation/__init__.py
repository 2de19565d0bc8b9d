"""Evaluation: suites of tasks judged by hidden tests, and the built-in suite."""
