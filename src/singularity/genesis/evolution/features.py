"""What the loop computes about a program without running it: an embedding for the novelty
check, and a complexity figure.

The embedding is a hashed bag of the code's tokens and token pairs, L2-normalised: two
programs that differ by a constant or a renamed variable are similar (about 0.99), rewrites
are not. It needs no model and no network, and is the same on every host, so a run's stored
embeddings stay comparable when it resumes elsewhere.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import math
import re

__all__ = ["DIMENSIONS", "code_complexity", "code_embedding"]

DIMENSIONS = 256
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|\S")


def _bucket(feature: str) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "big")
    return value % DIMENSIONS, 1.0 if value >> 63 else -1.0  # a sign spreads collisions


def code_embedding(code: str) -> list[float]:
    """The code's unit vector of DIMENSIONS hashed token and token-pair counts."""
    tokens = _TOKEN.findall(code)
    vector = [0.0] * DIMENSIONS
    for feature in (*tokens, *(f"{a} {b}" for a, b in itertools.pairwise(tokens))):
        index, sign = _bucket(feature)
        vector[index] += sign
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector


def code_complexity(code: str, language: str) -> float:
    """Python: the number of syntax-tree nodes; other languages (or code that does not
    parse): the number of non-blank lines."""
    if language == "python":
        try:
            return float(sum(1 for _ in ast.walk(ast.parse(code))))
        except (SyntaxError, ValueError):
            pass
    return float(sum(1 for line in code.splitlines() if line.strip()))
