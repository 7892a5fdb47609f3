#!/usr/bin/env python3
"""A local Google Safe Browsing v4 Lookup API for benchmarks: answers POST /v4/threatMatches:find
with no match after a fixed delay, and counts requests. Usage: fake_safe_browsing.py PORT DELAY_MS"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DELAY = int(sys.argv[2]) / 1000.0
COUNT = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        global COUNT
        COUNT += 1
        length = int(self.headers.get("content-length", "0"))
        json.loads(self.rfile.read(length) or b"{}")
        time.sleep(DELAY)
        body = b"{}"
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        body = str(COUNT).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
