"""A TCP relay that delays every byte by a fixed time each way: a network round trip on loopback.

Each direction of each connection forwards what it reads ``--delay-ms`` after reading it, in
order, without holding up the reading: bandwidth is loopback's, latency is the delay (a round
trip costs twice it). Run as its own process, so its threads never compete with the measured
code for the GIL. Prints the port it listens on, then serves until killed.

    .venv/bin/python bench/delay_proxy.py --target 127.0.0.1:9200 --delay-ms 0.5
"""

from __future__ import annotations

import argparse
import queue
import socket
import sys
import threading
import time


def relay(source: socket.socket, sink: socket.socket, delay_s: float) -> None:
    """Forward ``source`` to ``sink``, each chunk ``delay_s`` after it was read."""
    due: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

    def write() -> None:
        while True:
            at, data = due.get()
            wait = at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if not data:
                sink.shutdown(socket.SHUT_WR)
                return
            sink.sendall(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        while True:
            data = source.recv(1 << 18)
            due.put((time.monotonic() + delay_s, data))
            if not data:
                break
    except OSError:
        due.put((time.monotonic(), b""))
    writer.join()


def serve(listener: socket.socket, target: tuple[str, int], delay_s: float) -> None:
    while True:
        client, _ = listener.accept()
        upstream = socket.create_connection(target)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=relay, args=(source, sink, delay_s), daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--target", default="127.0.0.1:9200")
    parser.add_argument("--delay-ms", type=float, default=0.5, help="each way")
    args = parser.parse_args()
    host, port = args.target.rsplit(":", 1)
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    try:
        serve(listener, (host, int(port)), args.delay_ms / 1000)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
