/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * IPIP encapsulation for the load balancer's `forwarding: ipip` services (as Katran's encap_v4):
 * the client's packet goes unchanged inside an outer IPv4 header from the service's tunnel source
 * to the backend, which decapsulates it and answers the client directly from the VIP.
 *
 * Outer header: version 4, IHL 5, TOS and DF copied from the inner header (RFC 2003 5.1: a DF
 * inner packet must not be fragmented on the way), the inner packet's ID (so fragments of different
 * outer packets never share one), TTL LB_ENCAP_TTL, protocol 4, checksum computed in full.
 * A packet that no longer fits the egress device's MTU with the 20 extra bytes is not sent and is
 * counted (LB_CNT_ENCAP_TOO_BIG): XDP cannot fragment. A DF packet is answered with ICMP
 * "fragmentation needed", next-hop MTU = egress MTU - 20 (bpf/lb_icmp_too_big.h,
 * LB_CNT_ICMP_TOO_BIG), so the client's path-MTU discovery lowers its packets; one without DF is
 * dropped. Raising the MTU towards the backends by 20 bytes avoids both (docs/xdp-load-balancer.md
 * "Forwarding modes").
 */
#ifndef EBPF_NETWORKING_LB_ENCAP_H
#define EBPF_NETWORKING_LB_ENCAP_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include "csum.h"
#include "lb_ipv4.h"

#ifndef LB_ENCAP_TTL
#define LB_ENCAP_TTL 64
#endif

/* Room for the outer header in front of the client's IPv4 packet, MTU permitting: 0, or -1 when the
 * packet is too big for ifindex (*mtu = that device's MTU, 0 when unknown; the caller answers or drops),
 * -2 when the headroom cannot grow. */
static __always_inline int lb_encap_make_room(struct xdp_md *ctx, __u32 ifindex, __u32 *mtu)
{
	__u32 mtu_len = 0;
	int rc = bpf_check_mtu(ctx, ifindex, &mtu_len, (__s32)sizeof(struct iphdr), 0);

	if (rc != BPF_MTU_CHK_RET_SUCCESS) {
		*mtu = rc == BPF_MTU_CHK_RET_FRAG_NEEDED ? mtu_len : 0;
		return -1;
	}
	if (bpf_xdp_adjust_head(ctx, 0 - (int)sizeof(struct iphdr)))
		return -2;
	return 0;
}

/* After lb_encap_make_room: write Ethernet type and the outer header in front of the inner packet.
 * Returns the Ethernet header, or 0 when the bounds do not hold (caller drops). */
static __always_inline struct ethhdr *lb_encap_ipip_header(struct xdp_md *ctx, __be32 saddr, __be32 daddr)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *outer = (void *)(eth + 1);
	struct iphdr *inner = outer + 1;

	if ((void *)(inner + 1) > data_end)
		return 0;
	eth->h_proto = bpf_htons(ETH_P_IP);
	lb_ipv4_write_header(outer, inner->tos, bpf_htons(bpf_ntohs(inner->tot_len) + (__u16)sizeof(struct iphdr)),
			     inner->id, inner->frag_off & bpf_htons(LB_IP_DF), LB_ENCAP_TTL, IPPROTO_IPIP, saddr, daddr);
	return eth;
}

#endif
