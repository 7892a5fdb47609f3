#!/usr/bin/env python3
"""A loopback DNS server for the SMTP benchmark: answers every question NXDOMAIN at once, so the
gateway's SPF/DKIM/DMARC stage runs its real lookups (and its resolver cache) without the
network. Usage: fake_dns.py PORT"""
import socket
import sys

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    query, peer = sock.recvfrom(4096)
    if len(query) < 12:
        continue
    end = 12
    while end < len(query) and query[end] != 0:
        end += 1 + query[end]
    end += 5
    header = query[:2] + bytes([0x84 | (query[2] & 0x01), 0x83]) + b"\x00\x01\x00\x00\x00\x00\x00\x00"
    sock.sendto(header + query[12:end], peer)
