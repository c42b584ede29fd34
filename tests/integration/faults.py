"""Loopback fault proxies: an HTTP proxy for OpenSearch and a TCP proxy for Redis.

Tests switch their mode while syncer delivers batches through them: refuse connections, answer
429 or 503 to whole requests, or turn some ``_bulk`` items into 429s after OpenSearch applied
them (a response lost after the write, the hardest case for ordering), or stall every request
(an OpenSearch that stopped answering).
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

MODES = ("pass", "refuse", "http_429", "http_503", "bulk_items_429", "stall")


class OpenSearchFaultProxy:
    """Forwards HTTP to OpenSearch on loopback, misbehaving as ``mode`` says."""

    def __init__(self, target_url: str, seed: int = 0) -> None:
        parts = urlsplit(target_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 9200)
        self.mode = "pass"
        self.stall_s = 30.0  # how long "stall" holds each request before forwarding it
        self.injected: Counter[str] = Counter()
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                mode = proxy.mode
                if mode == "refuse":
                    proxy.count(mode)
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if mode in ("http_429", "http_503"):
                    proxy.count(mode)
                    status = 429 if mode == "http_429" else 503
                    self._answer(
                        status, json.dumps({"error": {"type": mode}, "status": status}).encode()
                    )
                    return
                if mode == "stall":
                    proxy.count(mode)
                    time.sleep(proxy.stall_s)
                status, payload = proxy.forward(self.command, self.path, body, dict(self.headers))
                if mode == "bulk_items_429" and "_bulk" in self.path and status == 200:
                    payload = proxy.fail_some_items(payload)
                self._answer(status, payload)

            def _answer(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, mode: str) -> None:
        with self.lock:
            self.injected[mode] += 1

    def forward(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(*self.target, timeout=30)
        try:
            headers = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection")}
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def fail_some_items(self, payload: bytes) -> bytes:
        """Report about half the bulk items as 429 although OpenSearch applied them."""
        response = json.loads(payload)
        for item in response.get("items", []):
            if self.rng.random() < 0.5:
                ((_, result),) = item.items()
                result.clear()
                result.update(
                    {
                        "status": 429,
                        "error": {"type": "es_rejected_execution_exception", "reason": "injected"},
                    }
                )
                response["errors"] = True
                self.count("bulk_items_429")
        return json.dumps(response).encode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class TcpFaultProxy:
    """Forwards TCP (Redis) on loopback; when down it refuses new and cuts open connections."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.down = False
        self.injected = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                self.injected += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass  # the other direction or set_down() closed the pair; nothing to relay
        finally:
            for end in (source, sink):
                try:
                    end.close()
                except OSError:
                    continue

    def set_down(self, down: bool) -> None:
        self.down = down
        if down:
            with self.lock:
                for connection in self.connections:
                    try:
                        connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        continue
                self.connections.clear()

    def close(self) -> None:
        self.running = False
        self.set_down(True)
        self.listener.close()


@contextmanager
def opensearch_proxy(target_url: str, seed: int = 0) -> Iterator[OpenSearchFaultProxy]:
    proxy = OpenSearchFaultProxy(target_url, seed)
    try:
        yield proxy
    finally:
        proxy.close()


@contextmanager
def redis_proxy(target_url: str) -> Iterator[TcpFaultProxy]:
    parts = urlsplit(target_url)
    proxy = TcpFaultProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    try:
        yield proxy
    finally:
        proxy.close()
