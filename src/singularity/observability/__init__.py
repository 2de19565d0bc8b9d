"""Health and Prometheus metrics of a service process, over HTTP.

`metrics` holds the process's counters (the consumer runtime and Nexus record into them);
`server` serves `/healthz`, `/livez` and `/metrics`. Nothing is imported here, so that the
consumer runtime can import `metrics` without pulling in the server.
"""
