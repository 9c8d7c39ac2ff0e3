"""Lines and exact-length frames from a child process's byte stream.

The sandbox talks to two kinds of child over pipes or sockets: the workers' runners
(`arena.sandbox.workers`) and the host compile helper (`arena.sandbox.compiler`). Both
answer with newline-terminated headers followed by raw bytes of a stated length.
"""

from __future__ import annotations


class BufferedReader:
    """`readline` and `read_exact` over the bytes in ``self._buf``.

    A subclass keeps ``self._buf`` (a bytearray) and defines ``_fill(deadline)``: wait
    until more bytes arrive and append them, raising its own error at EOF or at
    ``deadline`` (a `time.monotonic` value).
    """

    _buf: bytearray

    def readline(self, deadline: float) -> bytes:
        """The next line, without its newline."""
        while True:
            i = self._buf.find(b"\n")
            if i >= 0:
                line = bytes(self._buf[:i])
                del self._buf[: i + 1]
                return line
            self._fill(deadline)

    def read_exact(self, n: int, deadline: float) -> bytes:
        """Exactly ``n`` bytes."""
        while len(self._buf) < n:
            self._fill(deadline)
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data
