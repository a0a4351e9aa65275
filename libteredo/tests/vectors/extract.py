#!/usr/bin/env python3
"""Turns the pcap files written by capture.sh into one hex file per packet.

Usage: extract.py OUTDIR NAME=IFACE_PCAP...   (called by capture.sh)

Reads classic pcap files (Ethernet link type, as tcpdump writes on a veth),
keeps IPv4/UDP packets with port 3544 on one side, classifies each Teredo
payload (authentication, origin indication, bubble, ICMPv6 type) and writes
the first packet of each kind we keep as a test vector:

    # <kind>: <who> -> <who>, <src ip>:<port> -> <dst ip>:<port> (<capture>)
    <hex, 32 bytes a line>

It also prints every Teredo packet it saw, one line each, to stdout.
Standard library only; it reads nothing but the files it is given.
"""
import ipaddress
import struct
import sys

SERVER = {"198.18.1.1", "198.18.1.2"}
RELAY = {"198.18.2.1"}
NAT_WAN = {"198.18.3.1"}
CLIENT_LAN = {"192.168.1.2"}
V6HOST = ipaddress.IPv6Address("2001:db8:9::1")


def who(ip):
    if ip in SERVER:
        return "server"
    if ip in RELAY:
        return "relay"
    if ip in NAT_WAN or ip in CLIENT_LAN:
        return "client"
    return ip


def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        sec, usec, incl, _orig = struct.unpack(endian + "IIII", data[off:off + 16])
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if linktype == 1:  # Ethernet
            if len(frame) < 14 or frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
        elif linktype == 113:  # Linux cooked capture
            if len(frame) < 16 or frame[14:16] != b"\x08\x00":
                continue
            ip = frame[16:]
        else:
            continue
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 15) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        ip = ip[:total]
        udp = ip[ihl:]
        if len(udp) < 8:
            continue
        sport, dport, ulen = struct.unpack(">HHH", udp[:6])
        payload = udp[8:ulen]
        src = str(ipaddress.IPv4Address(ip[12:16]))
        dst = str(ipaddress.IPv4Address(ip[16:20]))
        yield sec + usec / 1e6, src, sport, dst, dport, payload


def classify(p):
    """Returns (has_auth, origin, ipv6 bytes) or None."""
    auth = origin = None
    if p[:2] == b"\x00\x01" and len(p) >= 4:
        n = 13 + p[2] + p[3]
        auth, p = p[:n], p[n:]
    if p[:2] == b"\x00\x00" and len(p) >= 8:
        origin, p = p[:8], p[8:]
    if len(p) < 40 or p[0] >> 4 != 6:
        return None
    return auth, origin, p


def describe(ipv6):
    nh, plen = ipv6[6], struct.unpack(">H", ipv6[4:6])[0]
    src = ipaddress.IPv6Address(ipv6[8:24])
    dst = ipaddress.IPv6Address(ipv6[24:40])
    if nh == 59 and plen == 0:
        return "bubble", src, dst
    if nh == 58 and len(ipv6) > 40:
        return {128: "echo-request", 129: "echo-reply", 133: "rs",
                134: "ra"}.get(ipv6[40], "icmpv6-%d" % ipv6[40]), src, dst
    return "nh-%d" % nh, src, dst


TESTS = set()  # (ident, seq, data) of direct connectivity tests seen


def echo_key(ipv6):
    return bytes(ipv6[44:48]) + bytes(ipv6[48:])


def kind_of(src, dst, auth, origin, ipv6):
    k, s6, d6 = describe(ipv6)
    a, b = who(src), who(dst)
    if k == "echo-request" and a == "client" and b == "server" and d6 == V6HOST:
        TESTS.add(echo_key(ipv6))
    if (k == "echo-reply" and a == "relay" and b == "client"
            and echo_key(ipv6) in TESTS):
        return "connectivity-test-echo-reply-relay-to-client"
    if k == "rs" and auth and not origin:
        return "rs"
    if k == "ra" and auth and origin:
        return "ra"
    if k == "bubble":
        if origin and a == "server" and b == "client":
            return "bubble-forwarded-origin"
        if not origin and a == "client" and b == "server":
            return "bubble-indirect-client-to-server"
        if not origin and a == "relay" and b == "server":
            return "bubble-indirect-relay-to-server"
        if not origin and {a, b} == {"client", "relay"}:
            return "bubble-direct-%s-to-%s" % (a, b)
    if k in ("echo-request", "echo-reply") and not auth:
        if a == "client" and b == "server" and d6 == V6HOST:
            return "connectivity-test-%s-client-to-server" % k
        if {a, b} == {"client", "relay"} and not origin:
            return "%s-%s-to-%s" % (k, a, b)
    return None


def main():
    outdir = sys.argv[1]
    seen = {}
    packets = []
    for arg in sys.argv[2:]:
        name, path = arg.split("=", 1)
        packets += [(p[0], name) + p[1:] for p in read_pcap(path)]
    # In time order, so a connectivity test is seen before its reply.
    packets.sort(key=lambda p: p[0])
    for t, name, src, sport, dst, dport, payload in packets:
        if 3544 not in (sport, dport):
            # Client <-> relay traffic uses the mapped port on one side
            # and the relay's port on the other: keep it too.
            if not ({who(src), who(dst)} == {"client", "relay"}):
                continue
        c = classify(payload)
        if c is None:
            continue
        auth, origin, ipv6 = c
        k, s6, d6 = describe(ipv6)
        kind = kind_of(src, dst, auth, origin, ipv6)
        if kind == "bubble-direct-client-to-relay" and dport == 3545:
            # capture.sh pings a Teredo peer "mapped" at 198.18.2.1:3545.
            kind = "bubble-direct-client-to-peer"
        print("%.6f %-6s %s:%d -> %s:%d auth=%d origin=%d %s %s -> %s => %s" % (
            t, name, src, sport, dst, dport, auth is not None,
            origin is not None, k, s6, d6, kind))
        # Prefer the public side of the NAT: skip the client's LAN view
        # when the same packet is also captured outside.
        if kind and (kind not in seen or (
                seen[kind][2] in CLIENT_LAN or seen[kind][4] in CLIENT_LAN)
                and src not in CLIENT_LAN and dst not in CLIENT_LAN):
            seen[kind] = (t, name, src, sport, dst, dport, payload)
    for kind, (t, name, src, sport, dst, dport, payload) in sorted(seen.items()):
        with open("%s/%s.hex" % (outdir, kind), "w") as f:
            f.write("# %s: %s -> %s, %s:%d -> %s:%d (captured on %s)\n" % (
                kind, who(src), "peer" if dport == 3545 else who(dst),
                src, sport, dst, dport, name))
            h = payload.hex()
            for i in range(0, len(h), 64):
                f.write(h[i:i + 64] + "\n")
    print("wrote:", " ".join(sorted(seen)))


if __name__ == "__main__":
    main()
