"""Circle packing, n = 26: place 26 non-overlapping circles in the unit square so that the sum
of their radii is as large as possible. Print the circles as JSON: [[x, y, r], ...].

This starting point is a 5 x 5 grid of circles of radius 0.1, plus one small circle in a gap
of the grid: a sum of about 2.54. The best packings known reach about 2.635.
"""

import json
import math


def pack() -> list[list[float]]:
    circles = [[0.1 + 0.2 * i, 0.1 + 0.2 * j, 0.1] for i in range(5) for j in range(5)]
    gap = math.sqrt(2 * 0.1**2) - 0.1  # between four neighbouring circles
    circles.append([0.2, 0.2, gap * 0.999])
    return circles


if __name__ == "__main__":
    print(json.dumps(pack()))
