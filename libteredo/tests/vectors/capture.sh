#!/bin/bash
# Captures the Teredo test vectors in this folder from the C reference
# (Debian's miredo and miredo-server 1.2.x). Run by hand, as root, on a
# machine with those packages, tcpdump, iproute2, nftables and ping; the
# test suite never runs it. It builds the namespace lab of
# ../../../../shared/lab/topo.sh (or $TOPO) with prefix "w":
#
#   wsrv   miredo-server on 198.18.1.1 + 198.18.1.2
#   wrelay miredo, RelayType cone, 198.18.2.1, routes 2001::/32
#   wnat   masquerade, WAN 198.18.3.1
#   wcli   miredo client behind the NAT (192.168.1.2)
#   wv6h   native IPv6 host 2001:db8:9::1
#
# then qualifies the client, pings the client's Teredo address from wv6h and
# wv6h from the client, captures UDP on the veths of wsrv, wrelay and wcli,
# and writes one <kind>.hex file per kept packet with extract.py.
#
# usage: capture.sh [OUTDIR]   (default: this folder)
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE}
TOPO=${TOPO:-$HERE/../../../../shared/lab/topo.sh}
P=w
T=$(mktemp -d /tmp/teredo-capture.XXXXXX)
PIDS=()
ns() { ip netns exec "$P$1" "${@:2}"; }
tree() { # a process and all its descendants
  local c
  echo "$1"
  for c in $(pgrep -P "$1"); do tree "$c"; done
}
stop_all() {
  # The C daemons run a supervisor that restarts its child, and the child
  # aborts on SIGTERM inside the chroot (libgcc_s is not there): kill the
  # whole tree of each process started here, by id.
  local all= p
  for p in "${PIDS[@]}"; do all="$all $(tree "$p")"; done
  [ -n "${all// /}" ] && kill -9 $all 2>/dev/null || true
  PIDS=()
  sleep 1
}
cleanup() {
  stop_all
  "$TOPO" down "$P" >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$TOPO" up "$P"

cat >"$T/server.conf" <<CONF
ServerBindAddress 198.18.1.1
CONF
cat >"$T/relay.conf" <<CONF
RelayType cone
InterfaceName ${P}teredo
CONF
cat >"$T/client.conf" <<CONF
RelayType client
ServerAddress 198.18.1.1
InterfaceName ${P}teredo
CONF

# Capture first, so the very first RS is seen.
for spec in srv:s-i relay:r-i cli:c-n nat:n-i; do
  n=${spec%%:*} i=${spec#*:}
  ns "$n" timeout 60 tcpdump -n -s 0 -U -i "$P$i" -w "$T/$n.pcap" udp \
    2>"$T/tcpdump-$n.log" &
  PIDS+=($!)
done
sleep 2

ns srv timeout 60 miredo-server -f -c "$T/server.conf" -t /tmp -p "$T/server.pid" 2>"$T/server.log" &
PIDS+=($!)
ns relay timeout 60 miredo -f -c "$T/relay.conf" -t /tmp -p "$T/relay.pid" 2>"$T/relay.log" &
PIDS+=($!)
sleep 2
# The C relay routes 2001::/32 to its interface; make sure it is there.
ns relay ip -6 route replace 2001::/32 dev "${P}teredo" 2>/dev/null || true
ns cli timeout 60 miredo -f -c "$T/client.conf" -t /tmp -p "$T/client.pid" 2>"$T/client.log" &
PIDS+=($!)

# Wait (bounded) for the client's Teredo address.
ADDR=
for _ in $(seq 1 40); do
  ADDR=$(ns cli ip -6 -o addr show dev "${P}teredo" scope global 2>/dev/null |
    awk '{print $4}' | cut -d/ -f1 | head -n1)
  [ -n "$ADDR" ] && break
  sleep 0.5
done
[ -n "$ADDR" ] || { echo "client did not qualify" >&2; exit 1; }
echo "client address: $ADDR"

ns v6h ping -6 -c 4 -i 0.5 -W 2 "$ADDR" || true
sleep 1
ns cli ping -6 -c 4 -i 0.5 -W 2 2001:db8:9::1 || true
# A Teredo peer that does not exist (server 198.18.1.1, mapped
# 198.18.2.1:3545, where nobody listens): the client sends a direct bubble
# to the mapped endpoint and an indirect bubble through the server.
ns cli ping -6 -c 1 -W 2 2001:0:c612:101:0:f226:39ed:fdfe || true
sleep 2

# tcpdump first (SIGTERM, so it flushes its file), then the daemons.
for p in "${PIDS[@]:0:4}"; do kill "$p" 2>/dev/null || true; done
sleep 1
stop_all
python3 "$HERE/extract.py" "$OUT" "${P}srv:${P}s-i=$T/srv.pcap" \
  "${P}relay:${P}r-i=$T/relay.pcap" "${P}nat:${P}n-i=$T/nat.pcap" \
  "${P}cli:${P}c-n=$T/cli.pcap" | tee "$T/summary.txt"
echo "pcaps and logs kept in $T"
