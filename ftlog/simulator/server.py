"""The simulated API on a loopback HTTP socket (stdlib server, keep-alive)."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ftlog.simulator.api import BASE_PATH, Response, SimulatedAPI, control_refused

logger = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    # Headers and body go out in separate writes; with Nagle on, each keep-alive answer
    # would wait ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._send(self.server.api.handle(self.path, self.headers.get("Authorization")))

    def do_POST(self) -> None:
        """Control requests (``/_sim/touch``), from a loopback address only."""
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if not ipaddress.ip_address(self.client_address[0]).is_loopback:
            self._send(control_refused())
            return
        self._send(self.server.api.control(self.path))

    def _send(self, response: Response) -> None:
        if response.delay:
            time.sleep(response.delay)
        if response.drop_connection:
            self.close_connection = True
            return
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:  # request line only, no headers
        logger.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, api: SimulatedAPI, host: str, port: int) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.api = api
        super().__init__((host, port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, reset) is routine here, not worth a traceback.
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)

    @property
    def base_url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}{BASE_PATH}"


@contextmanager
def serve_in_thread(api: SimulatedAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``api`` from a background thread; yields the base URL (port 0: a free port)."""
    server = _Server(api, host, port)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.base_url
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def serve(
    api: SimulatedAPI, host: str, port: int, on_ready: Callable[[str], None] = lambda url: None
) -> None:
    """Serve ``api`` until Ctrl-C; ``on_ready`` gets the base URL once the socket listens."""
    with _Server(api, host, port) as server:
        on_ready(server.base_url)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            logger.debug("interrupted, shutting down")
