#!/bin/sh
# The netfilter peer of the benchmark (kube-proxy style): DNAT of VIP:PORT to the backends (random, equal
# shares) plus MASQUERADE, in the network namespace of process PID (the lab's lb container).
#
#   dnat_peer.sh up|down PID STATE_FILE VIP PORT MASQ_PORTS BACKEND_IP:PORT...
#
# up saves the sysctls it changes in STATE_FILE (once) and adds the rules; down removes exactly them and
# puts the sysctls back. Both can be repeated; down also after a partial up.
# Why the choices: the VIP is not one the XDP program owns, so XDP passes these packets at its cheapest
# (the address filter) and both can stay attached while the paths are interleaved; MASQUERADE's ports
# (MASQ_PORTS) stay out of the XDP load balancer's snat_port_range, whose replies to the lb address it
# would otherwise claim; send_redirects is off because the lb forwards out of the interface the packet
# came in on (client and backends share the subnet), which makes Linux tell the client to bypass it.
set -eu
action=$1 pid=$2 state=$3 vip=$4 port=$5 masq=$6
shift 6
chain=EBPFNET-BENCH-DNAT
ns() { nsenter -t "$pid" -n "$@"; }
pre="-d $vip/32 -p tcp --dport $port -j $chain"
post="-p tcp -m conntrack --ctstate DNAT --ctorigdst $vip/32 -j MASQUERADE --to-ports $masq"

case $action in
up)
    [ $# -gt 0 ] || { echo "dnat_peer.sh: no backends given" >&2; exit 2; }
    if [ ! -f "$state" ]; then
        for k in net.ipv4.ip_forward net.ipv4.conf.all.send_redirects net.ipv4.conf.eth0.send_redirects; do
            echo "$k=$(ns sysctl -n $k)"
        done > "$state.tmp"
        mv "$state.tmp" "$state"
    fi
    ns sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.eth0.send_redirects=0
    ns iptables -t nat -N $chain 2>/dev/null || ns iptables -t nat -F $chain
    left=$#
    for backend in "$@"; do
        if [ "$left" -gt 1 ]; then  # 1/left of what is left: equal shares
            ns iptables -t nat -A $chain -p tcp -m statistic --mode random --probability "$(awk "BEGIN{printf \"%.6f\", 1/$left}")" \
                -j DNAT --to-destination "$backend"
        else
            ns iptables -t nat -A $chain -p tcp -j DNAT --to-destination "$backend"
        fi
        left=$((left - 1))
    done
    # shellcheck disable=SC2086
    ns iptables -t nat -C PREROUTING $pre 2>/dev/null || ns iptables -t nat -A PREROUTING $pre
    # shellcheck disable=SC2086
    ns iptables -t nat -C POSTROUTING $post 2>/dev/null || ns iptables -t nat -A POSTROUTING $post
    ;;
down)
    # shellcheck disable=SC2086
    while ns iptables -t nat -C PREROUTING $pre 2>/dev/null; do ns iptables -t nat -D PREROUTING $pre; done
    # shellcheck disable=SC2086
    while ns iptables -t nat -C POSTROUTING $post 2>/dev/null; do ns iptables -t nat -D POSTROUTING $post; done
    ns iptables -t nat -F $chain 2>/dev/null || true
    ns iptables -t nat -X $chain 2>/dev/null || true
    if [ -f "$state" ]; then
        while IFS='=' read -r key value; do
            ns sysctl -qw "$key=$value"
        done < "$state"
        rm -f "$state"
    fi
    ;;
*)
    echo "dnat_peer.sh: up or down, not $action" >&2
    exit 2
    ;;
esac
