#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into seeds/<target>/.

The wire seeds are the packets captured from the C miredo
(../tests/vectors/*.hex). The engine seeds are short event sequences in the
encoding of src/engine.rs (`next_op`): qualification, pings to native and
Teredo peers, local discovery, the captured packets as raw datagrams. The
configuration and privsep seeds are typical files and frames.

Run it from anywhere after changing the event encoding; commit seeds/, never
the corpora libFuzzer grows (corpus/ is ignored).
"""

import pathlib
import shutil
import struct

HERE = pathlib.Path(__file__).resolve().parent
VECTORS = HERE.parent / "tests" / "vectors"
SEEDS = HERE / "seeds"


def vector(name):
    lines = (VECTORS / f"{name}.hex").read_text().splitlines()
    return bytes.fromhex("".join(l for l in lines if not l.startswith("#")))


def u16(n):
    return struct.pack(">H", n)


# Ops (first byte of an event, modulo 9).
RAW_UDP, RAW_TUN, ADVANCE, TIMEOUT, ANSWER_RS, PACKET, _, HOST, ANSWER_PING = range(9)
# Endpoints (modulo 10).
EP_SERVER, EP_SERVER2, EP_RELAY, EP_MAPPED, EP_PEER, EP_LAN, EP_PRIVATE = range(7)
# Addresses (modulo 8).
A_TEREDO_OF_FROM, A_TEREDO_OF, A_ME, A_NATIVE, A_DOC, A_LINK_LOCAL, A_ALL_NODES = range(7)
# Packet kinds (modulo 4).
K_BUBBLE, K_ECHO = 0, 1
TO_MULTICAST, TO_LOCAL = 0, 2


def raw_udp(ep, data, to=TO_LOCAL):
    return bytes([RAW_UDP, ep, to]) + u16(len(data)) + data


def advance(ms):
    return bytes([ADVANCE]) + u16(ms // 10)


def qualify():
    # Answer the RS with MAPPED and MTU 1280, then the cone probe.
    return bytes([ANSWER_RS, 0, 1, TIMEOUT, ANSWER_RS, 0, 1])


def echo(ident=1, seq=1, data=b"abcdefgh", reply=False):
    return bytes([K_ECHO]) + u16(ident) + u16(seq) + bytes([len(data)]) + data + bytes([int(reply)])


def host(src, dst, pkt):
    return bytes([HOST]) + src + dst + pkt


def packet(ep, src, dst, pkt, to=TO_LOCAL, flags=0, extra=b""):
    return bytes([PACKET, ep, to]) + src + dst + bytes([flags]) + extra + pkt


def teredo_of(ep, flags=0):
    return bytes([A_TEREDO_OF, ep]) + u16(flags)


def client_seeds():
    me = bytes([A_ME])
    native = bytes([A_NATIVE])
    peer = teredo_of(EP_PEER)
    yield "qualify", qualify() + advance(40000) + bytes([TIMEOUT, ANSWER_RS, 0, 1])
    yield "ping-native", qualify() + host(me, native, echo()) + bytes([ANSWER_PING, EP_RELAY]) + host(
        me, native, echo(seq=2)
    ) + packet(EP_RELAY, native, me, echo(reply=True))
    yield "ping-teredo-peer", qualify() + host(me, peer, echo()) + packet(
        EP_PEER, bytes([A_TEREDO_OF_FROM]) + u16(0), me, bytes([K_BUBBLE])
    ) + packet(EP_PEER, bytes([A_TEREDO_OF_FROM]) + u16(0), me, echo(reply=True))
    # A discovery bubble from a neighbour behind our NAT (same mapped IPv4).
    neighbour = bytes([A_TEREDO_OF, 7]) + u16(41000) + u16(0)
    yield "discovery", qualify() + packet(
        EP_LAN, neighbour, bytes([A_ALL_NODES]), bytes([K_BUBBLE]), to=TO_MULTICAST
    ) + host(me, neighbour, echo())
    # A peer bubbling us through the server (origin indication).
    yield "indirect-bubble", qualify() + packet(
        EP_SERVER, peer, me, bytes([K_BUBBLE]), flags=1, extra=bytes([EP_PEER])
    )
    yield "rogue-relay", qualify() + packet(EP_PEER, native, me, echo())
    yield "timers", qualify() + bytes([TIMEOUT] * 8) + advance(300000) + bytes([TIMEOUT] * 4)
    for name in ("ra", "bubble-forwarded-origin", "echo-request-relay-to-client",
                 "connectivity-test-echo-reply-relay-to-client"):
        ep = EP_SERVER if name in ("ra", "bubble-forwarded-origin") else EP_RELAY
        yield f"raw-{name}", qualify() + raw_udp(ep, vector(name))
    yield "raw-tun", qualify() + bytes([RAW_TUN]) + u16(len(vector("echo-request-client-to-relay"))) + vector(
        "echo-request-client-to-relay"
    )


def relay_seeds():
    native = bytes([A_NATIVE])
    peer = teredo_of(EP_PEER)
    from_peer = bytes([A_TEREDO_OF_FROM]) + u16(0)
    yield "native-to-teredo", host(native, peer, echo()) + packet(
        EP_PEER, from_peer, bytes([A_LINK_LOCAL]), bytes([K_BUBBLE])
    ) + packet(EP_PEER, from_peer, native, echo(reply=True)) + host(native, peer, echo(seq=2))
    yield "flood", b"".join(host(native, bytes([A_TEREDO_OF, 8, i, 1, 2, 3, 0, 7, 0, 0]), echo()) for i in range(12))
    yield "timers", host(native, peer, echo()) + bytes([TIMEOUT] * 6) + advance(60000) + bytes([TIMEOUT])
    yield "indirect-bubble", packet(EP_SERVER, peer, bytes([A_LINK_LOCAL]), bytes([K_BUBBLE]), flags=1, extra=bytes([EP_PEER]))
    for name in ("echo-request-client-to-relay", "bubble-direct-client-to-relay", "echo-reply-client-to-relay"):
        yield f"raw-{name}", raw_udp(EP_MAPPED, vector(name))
    yield "raw-tun", bytes([RAW_TUN]) + u16(len(vector("echo-request-relay-to-client"))) + vector(
        "echo-request-relay-to-client"
    )


def server_seeds():
    yield "rs", raw_udp(EP_MAPPED, vector("rs"))
    yield "rs-secondary", raw_udp(EP_MAPPED, vector("rs"), to=1)
    yield "relay-bubble", raw_udp(EP_RELAY, vector("bubble-indirect-relay-to-server"))
    yield "client-bubble", raw_udp(EP_MAPPED, vector("bubble-indirect-client-to-server"))
    yield "ping-test", raw_udp(EP_MAPPED, vector("connectivity-test-echo-request-client-to-server"))
    peer = teredo_of(EP_PEER)
    yield "bubble-to-peer", packet(EP_MAPPED, bytes([A_TEREDO_OF_FROM]) + u16(0), peer, bytes([K_BUBBLE]))
    yield "echo-to-native", packet(EP_MAPPED, bytes([A_TEREDO_OF_FROM]) + u16(0), bytes([A_NATIVE]), echo())


MIREDO_CONFS = {
    "client": "# /etc/miredo/miredo.conf\nServerAddress   teredo.example.net\nInterfaceName   teredo\nBindPort        3545\n",
    "relay": "RelayType       cone\nInterfaceName   teredo\nBindPort        3545\nSyslogFacility  local3\n",
    "full": (
        "RelayType client\nServerAddress 198.18.1.1\nServerAddress2 198.18.1.2\n"
        "LocalDiscovery enabled\nDiscoveryInterfaces ^eth[0-9]+$\nDiscoveryNetmask 192.168.0.0/16\n"
        "InterfaceName teredo\nBindAddress 0.0.0.0\nBindPort 0\nSyslogFacility daemon\n"
    ),
    "restricted": "relaytype restricted\nprefix 2001:0::\ninterfacemtu 1280\n",
    "errors": "RelayType bogus\nServerAddress\nServerAddress 1.2.3\nBindPort 99999\nUnknown x\n\tInterfaceName a b\n",
}
SERVER_CONFS = {
    "basic": "# /etc/miredo/miredo-server.conf\nServerBindAddress   192.0.2.221\nSyslogFacility      local4\n",
    "full": "ServerBindAddress 198.18.1.1\nServerBindAddress2 198.18.1.2\nPrefix 2001:0::\nInterfaceMTU 1400\n",
    "errors": "ServerBindAddress 10.0.0.1\nPrefix 3ffe::1:2\nInterfaceMTU 100\nServerBindAddress 1.1.1.1\n",
}


def privsep_seeds():
    # postcard: the variant index and integers as varints, an Ipv6Addr as
    # its 16 bytes; each frame is a 2-byte big-endian length and the body.
    addr = bytes.fromhex("20010000c612010100007ffe39ed2a2b")
    up = bytes([0, 7]) + addr + bytes([0x80, 0x0A])  # Up { 7, addr, 1280 }
    down = bytes([1, 7])  # Down { 7 }
    frame = lambda b: u16(len(b)) + b
    yield "up", frame(up)
    yield "down", frame(down)
    yield "up-down", frame(up) + frame(down)
    yield "oversized", u16(300) + bytes(300)
    yield "truncated", u16(20) + up[:5]


def write(target, items):
    d = SEEDS / target
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    n = 0
    for name, data in items:
        if isinstance(data, str):
            data = data.encode()
        (d / name).write_bytes(data)
        n += 1
    print(f"{target}: {n} seeds")


def main():
    write("wire", ((p.stem, vector(p.stem)) for p in sorted(VECTORS.glob("*.hex"))))
    write("engine_client", client_seeds())
    write("engine_relay", relay_seeds())
    write("engine_server", server_seeds())
    write("conf_miredo", MIREDO_CONFS.items())
    write("conf_server", SERVER_CONFS.items())
    write("privsep", privsep_seeds())


if __name__ == "__main__":
    main()
