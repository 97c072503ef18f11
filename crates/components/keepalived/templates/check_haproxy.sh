#!/bin/sh
# Managed by kbz (module 2, keepalived): the VRRP track script chk_haproxy.
# Exit 0 while HAProxy is active, so this host may hold the VIPs. Before HAProxy is
# installed (module 3) the check passes, so the VIPs come up with module 2; from then on a
# host whose HAProxy is down goes to FAULT and hands its VIPs to a peer.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
[ -x /usr/sbin/haproxy ] || exit 0
exec systemctl is-active --quiet haproxy.service
