/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The IPv4 header of a packet the load balancer forwards: new addresses, TTL one less, and the
 * header checksum updated incrementally (csum.h) for all three.
 */
#ifndef EBPF_NETWORKING_LB_IPV4_H
#define EBPF_NETWORKING_LB_IPV4_H

#include <linux/ip.h>
#include "csum.h"

static __always_inline void lb_ipv4_forward(struct iphdr *iph, __be32 saddr, __be32 daddr)
{
	__u16 check = lb_csum_replace4(iph->check, iph->saddr, saddr);
	check = lb_csum_replace4(check, iph->daddr, daddr);
	/* TTL is the high byte of the 16-bit word it shares with the protocol */
	__u16 old_word = bpf_htons(((__u16)iph->ttl << 8) | iph->protocol);
	iph->ttl -= 1;
	check = lb_csum_replace2(check, old_word, bpf_htons(((__u16)iph->ttl << 8) | iph->protocol));
	iph->check = check;
	iph->saddr = saddr;
	iph->daddr = daddr;
}

#endif
