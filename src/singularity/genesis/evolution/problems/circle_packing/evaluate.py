"""Evaluate a circle packing (n = 26): run `program.py`, check its circles strictly, score them.

Prints one JSON line last: {"correct", "combined_score", "public_metrics", "text_feedback"}.
The checks: exactly 26 circles, each three finite numbers with r > 0, each inside the unit
square, no two overlapping. The only slack is 1e-9, for floating-point rounding at contact.
The score is the sum of the radii (0 when anything fails).
"""

import json
import math
import subprocess
import sys

N = 26
SLACK = 1e-9
RUN_S = 60


def problems(circles: object) -> list[str]:
    if not isinstance(circles, list):
        return ["the output is not a JSON list of circles"]
    if len(circles) != N:
        return [f"expected {N} circles, got {len(circles)}"]
    found: list[str] = []
    for i, circle in enumerate(circles):
        ok = isinstance(circle, list) and len(circle) == 3
        if not ok or not all(isinstance(v, int | float) and math.isfinite(v) for v in circle):
            return [f"circle {i} is not three finite numbers: {circle!r}"]
        x, y, r = circle
        if r <= 0:
            found.append(f"circle {i} has radius {r} (must be > 0)")
        if x - r < -SLACK or x + r > 1 + SLACK or y - r < -SLACK or y + r > 1 + SLACK:
            found.append(f"circle {i} at ({x:.4f}, {y:.4f}) r={r:.4f} leaves the unit square")
    for i in range(N):
        for j in range(i + 1, N):
            (xi, yi, ri), (xj, yj, rj) = circles[i], circles[j]
            gap = math.hypot(xi - xj, yi - yj) - (ri + rj)
            if gap < -SLACK:
                found.append(f"circles {i} and {j} overlap by {-gap:.6f}")
    return found


def main() -> None:
    try:
        run = subprocess.run(
            [sys.executable, "program.py"], capture_output=True, text=True, timeout=RUN_S
        )
    except subprocess.TimeoutExpired:
        report(False, 0.0, {}, f"program.py ran longer than {RUN_S} s")
        return
    if run.returncode != 0:
        tail = run.stderr.strip().splitlines()[-5:]
        report(False, 0.0, {}, f"program.py exited {run.returncode}: " + " | ".join(tail))
        return
    lines = run.stdout.strip().splitlines()
    try:
        circles = json.loads(lines[-1]) if lines else None
    except ValueError as exc:
        report(False, 0.0, {}, f"the last line of output is not JSON: {exc}")
        return
    found = problems(circles)
    if found:
        shown = "; ".join(found[:5]) + (f" (and {len(found) - 5} more)" if len(found) > 5 else "")
        report(False, 0.0, {"violations": len(found)}, shown)
        return
    total = sum(c[2] for c in circles)
    report(True, total, {"sum_of_radii": total, "circles": N}, f"valid: sum of radii {total:.6f}")


def report(correct: bool, score: float, metrics: dict, feedback: str) -> None:
    body = {
        "correct": correct,
        "combined_score": score,
        "public_metrics": metrics,
        "text_feedback": feedback,
    }
    print(json.dumps(body))


if __name__ == "__main__":
    main()
