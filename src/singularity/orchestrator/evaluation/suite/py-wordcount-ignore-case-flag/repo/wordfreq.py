"""wordfreq: print the most frequent words of a text file."""

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterable

WORD = re.compile(r"[A-Za-z']+")


def count_words(lines: Iterable[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in lines:
        counts.update(WORD.findall(line))
    return counts


def top(counts: Counter[str], limit: int) -> list[tuple[str, int]]:
    """The `limit` most frequent words; ties in alphabetical order."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wordfreq", description=__doc__)
    parser.add_argument("path", help="the text file, or - for standard input")
    parser.add_argument("-n", "--top", type=int, default=10, help="how many words to print")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.path == "-":
        counts = count_words(sys.stdin)
    else:
        with open(args.path, encoding="utf-8") as text:
            counts = count_words(text)
    for word, count in top(counts, args.top):
        print(f"{count:6d} {word}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
