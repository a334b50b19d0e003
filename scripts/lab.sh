#!/bin/sh
# lab.sh — bring shadowtap's mirror lab up or down for manual use and the demo.
#
#   sudo scripts/lab.sh up [--name shadowtap-lab] [--vni 42] [--outer-ipv6] ...
#   sudo scripts/lab.sh status [--name shadowtap-lab]
#   sudo scripts/lab.sh down [--name shadowtap-lab]
#   sudo scripts/lab.sh serve [--name shadowtap-lab] [--in prod|shadow] [--addr :8080]
#   sudo scripts/lab.sh sweep    # remove labs of test processes that were killed
#
# up and status print KEY=VALUE lines (PROD_NS, RECV_NS, RECV_IFACE, VNI,
# MIRROR_SOURCE_CIDR, ...): `eval "$(sudo scripts/lab.sh up)"`.
# Then, for example:
#   ip netns exec "$RECV_NS" tcpdump -ni "$RECV_IFACE" udp port 4789
#   nsenter --net=/run/netns/"$RECV_NS" bin/shadowtap run --iface "$RECV_IFACE" --ports 8080 --vni "$VNI"
# (nsenter keeps the host's /sys/fs/bpf, so `shadowtap stats` sees the pins;
# `ip netns exec` would give the command a private mount namespace.)
set -eu
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
	awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2
	exit 2
fi
export PATH="$PATH:/usr/local/go/bin"
# Build once into a cache so repeated calls are quick and work under sudo.
bin="${LAB_BIN:-${TMPDIR:-/tmp}/shadowtap-lab-$(id -u)}"
go build -o "$bin" ./testenv/cmd/lab
exec "$bin" "$@"
