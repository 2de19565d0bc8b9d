"""`singularity run` serves its service's health and metrics, logs JSON, and stops on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from singularity.postgres.cluster import Cluster


def test_run_serves_health_and_metrics_and_logs_json_until_sigterm(cluster: Cluster) -> None:
    env = {**os.environ, "SINGULARITY_METRICS_PORT": "0", "SINGULARITY_LOG_FORMAT": "json"}
    service = subprocess.Popen(
        [sys.executable, "-m", "singularity", "run", "centralcloud"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        serving = _event(service, "metrics_serving")
        address = serving["address"]
        assert address.startswith("http://127.0.0.1:")
        _event(service, "centralcloud_started")
        health = _get(f"{address}/healthz")
        assert health == (200, {"status": "ok", "services": {"centralcloud": "running"}})
        with urllib.request.urlopen(f"{address}/metrics", timeout=10) as response:
            text = response.read().decode()
        assert 'singularity_service_up{service="centralcloud"} 1.0' in text
        assert 'singularity_queue_depth{queue="job_requests"}' in text
        service.send_signal(signal.SIGTERM)
        _, err = service.communicate(timeout=30)
    finally:
        service.kill()
    assert service.returncode == 0, err
    assert "Traceback" not in err
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert "centralcloud_stopped" in events


def _event(process: subprocess.Popen[str], name: str, seconds: float = 60) -> dict[str, Any]:
    """The first JSON log line of `name` on the process's stderr."""
    assert process.stderr is not None
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        entry = json.loads(line)  # every line is one JSON object
        if entry["event"] == name:
            return dict(entry)
    raise AssertionError(f"{name} not logged in:\n{''.join(seen)}")


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)
