#!/bin/sh
# Managed by kbz (module 2, keepalived): the VRRP track script chk_peers.
# Usage: kbz_check_peers.sh NEED PEER...
# Exit 0 while this host and the peers that answer a ping within a second are at least NEED
# (a majority of the lb hosts). A host cut off from its peers goes to FAULT and gives up its
# VIPs instead of claiming them next to the real holder (two holders: clients follow the last
# gratuitous ARP to the host that cannot reach the cluster).
PATH=/usr/sbin:/usr/bin:/sbin:/bin
need=$1
shift
pids=""
for peer in "$@"; do
    ping -n -q -c 1 -W 1 "$peer" >/dev/null 2>&1 &
    pids="$pids $!"
done
up=1
for pid in $pids; do
    wait "$pid" && up=$((up + 1))
done
[ "$up" -ge "$need" ]
