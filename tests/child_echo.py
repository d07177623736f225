"""A child for tests/test_child_processes.py: echoes each frame back, after a stray print (which
must not reach the frame stream); ("exit", code) ends it with that code."""

from __future__ import annotations

import sys

from service.child_processes import ChildPipes


def main() -> int:
    pipes = ChildPipes.open()
    while (message := pipes.read()) is not None:
        print("a library printing to stdout")
        sys.stdout.flush()
        if isinstance(message, tuple) and message[0] == "exit":
            return int(message[1])
        pipes.write(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
