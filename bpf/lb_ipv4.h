/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The IPv4 header of a packet the load balancer forwards: new addresses, TTL one less, and the
 * header checksum updated incrementally (csum.h) for all three; and the full checksum of a header
 * the load balancer writes itself (a tunnel's outer header, an ICMP answer).
 */
#ifndef EBPF_NETWORKING_LB_IPV4_H
#define EBPF_NETWORKING_LB_IPV4_H

#include <linux/ip.h>
#include "csum.h"

#define LB_IP_DF 0x4000 /* frag_off: don't fragment */

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

/* The header checksum of a 20-byte IPv4 header whose check field is 0. */
static __always_inline __u16 lb_ipv4_header_csum(const struct iphdr *iph)
{
	const __u16 *word = (const __u16 *)iph;
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < (int)(sizeof(struct iphdr) / 2); i++)
		sum += word[i];
	return lb_csum_fold(sum);
}

/* Write a 20-byte IPv4 header (no options) and its checksum; tot_len, id and frag_off in network order. */
static __always_inline void lb_ipv4_write_header(struct iphdr *iph, __u8 tos, __be16 tot_len, __be16 id,
						 __be16 frag_off, __u8 ttl, __u8 protocol, __be32 saddr, __be32 daddr)
{
	iph->version = 4;
	iph->ihl = 5;
	iph->tos = tos;
	iph->tot_len = tot_len;
	iph->id = id;
	iph->frag_off = frag_off;
	iph->ttl = ttl;
	iph->protocol = protocol;
	iph->check = 0;
	iph->saddr = saddr;
	iph->daddr = daddr;
	iph->check = lb_ipv4_header_csum(iph);
}

#endif
