"""The ``python -m ocr`` commands.

python -m ocr read IMAGE... --ckpt CKPT [--no-lm]
python -m ocr build-data [--out DIR] [--corpus PATH]
"""

from __future__ import annotations

import sys

USAGE = "usage: python -m ocr {read,build-data} ...  (python -m ocr read --help for the reader's options)"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command == "read":
        from ocr.read import main as read_main

        return read_main(rest)
    if command == "build-data":
        from ocr.charset import main as build_main

        return build_main(rest)
    print(USAGE, file=sys.stderr)
    return 0 if command in ("-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main())
