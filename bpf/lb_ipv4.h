/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The IPv4 header of a packet the load balancer forwards: new addresses, TTL one less, and the
 * header checksum updated incrementally (csum.h) for all three.
 */
#ifndef EBPF_NETWORKING_LB_IPV4_H
#define EBPF_NETWORKING_LB_IPV4_H

#include <linux/ip.h>
#include "csum.h"

/* The change of the two addresses as a checksum difference (csum.h): the IPv4 header and the
 * TCP/UDP pseudo-header both cover them. */
static __always_inline __u32 lb_ipv4_addr_diff(const struct iphdr *iph, __be32 saddr, __be32 daddr)
{
	return lb_csum_diff4(lb_csum_diff4(0, iph->saddr, saddr), iph->daddr, daddr);
}

/* addr_diff from lb_ipv4_addr_diff(iph, saddr, daddr) */
static __always_inline void lb_ipv4_forward_diff(struct iphdr *iph, __be32 saddr, __be32 daddr, __u32 addr_diff)
{
	/* TTL is the high byte of the 16-bit word it shares with the protocol; TTL - 1 lowers that word
	 * by 0x0100 in network order */
	__u16 old_word = bpf_htons(((__u16)iph->ttl << 8) | iph->protocol);
	iph->ttl -= 1;
	__u32 diff = lb_csum_diff2(addr_diff, old_word, bpf_htons(((__u16)iph->ttl << 8) | iph->protocol));
	iph->check = lb_csum_apply(iph->check, diff);
	iph->saddr = saddr;
	iph->daddr = daddr;
}

static __always_inline void lb_ipv4_forward(struct iphdr *iph, __be32 saddr, __be32 daddr)
{
	lb_ipv4_forward_diff(iph, saddr, daddr, lb_ipv4_addr_diff(iph, saddr, daddr));
}

#endif
