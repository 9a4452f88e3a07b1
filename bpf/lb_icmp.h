/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ICMP errors about translated flows (destination unreachable, including fragmentation needed, and
 * time exceeded), in the spirit of Katran's handle_icmp.h and Cilium's
 * snat_v4_rev_nat_handle_icmp_error; our own code. The error quotes the packet that caused it; the
 * quoted header is rewritten the way that packet's flow is, the outer header to match, and the
 * checksums follow: outer IPv4, the ICMP sum (it covers the quote), the quoted IPv4 header, and the
 * quoted UDP/TCP checksum when the quote holds it.
 *
 * Pure packet work; the caller finds the flow and gives the new addresses and ports.
 */
#ifndef EBPF_NETWORKING_LB_ICMP_H
#define EBPF_NETWORKING_LB_ICMP_H

#include <linux/icmp.h>
#include "csum.h"

#define LB_ICMP_QUOTE_MIN 8 /* bytes of L4 header an ICMP error carries at least: the ports */

struct lb_icmp_error {
	struct icmphdr *icmp;
	struct iphdr *inner;
	__be16 *inner_ports;
	__u16 *inner_check; /* the quoted L4 checksum, or 0 when the quote is too short */
};

/* Parse an ICMP error quoting a TCP/UDP packet. Returns 0 when the packet is one. */
static __always_inline int lb_icmp_parse(struct iphdr *iph, void *data_end, struct lb_icmp_error *err)
{
	struct icmphdr *icmp = (void *)iph + iph->ihl * 4;
	if ((void *)(icmp + 1) > data_end)
		return -1;
	if (icmp->type != ICMP_DEST_UNREACH && icmp->type != ICMP_TIME_EXCEEDED)
		return -1;
	struct iphdr *inner = (void *)(icmp + 1);
	if ((void *)(inner + 1) > data_end || inner->ihl != 5)
		return -1;
	if (inner->protocol != IPPROTO_TCP && inner->protocol != IPPROTO_UDP)
		return -1;
	__be16 *ports = (void *)(inner + 1);
	if ((void *)ports + LB_ICMP_QUOTE_MIN > data_end)
		return -1;
	err->icmp = icmp;
	err->inner = inner;
	err->inner_ports = ports;
	err->inner_check = 0;
	if (inner->protocol == IPPROTO_UDP) {
		struct udphdr *uh = (void *)ports;
		err->inner_check = &uh->check; /* within the 8 bytes checked above */
	} else {
		struct tcphdr *th = (void *)ports;
		if ((void *)(th + 1) <= data_end)
			err->inner_check = &th->check;
	}
	return 0;
}

/* Rewrite the quote to (saddr:sport -> daddr:dport) and the outer header to (osaddr -> odaddr). */
static __always_inline void lb_icmp_rewrite(struct iphdr *iph, struct lb_icmp_error *err, __be32 osaddr,
					    __be32 odaddr, __be32 saddr, __be32 daddr, __be16 sport, __be16 dport)
{
	struct iphdr *inner = err->inner;
	__u16 icmp_check = err->icmp->checksum;

	if (err->inner_check && (inner->protocol == IPPROTO_TCP || *err->inner_check != 0)) {
		__u16 old = *err->inner_check;
		__u16 check = lb_csum_replace4(old, inner->saddr, saddr);
		check = lb_csum_replace4(check, inner->daddr, daddr);
		check = lb_csum_replace2(check, err->inner_ports[0], sport);
		check = lb_csum_replace2(check, err->inner_ports[1], dport);
		if (inner->protocol == IPPROTO_UDP && check == 0)
			check = 0xffff;
		*err->inner_check = check;
		icmp_check = lb_csum_replace2(icmp_check, old, check);
	}
	icmp_check = lb_csum_replace2(icmp_check, err->inner_ports[0], sport);
	icmp_check = lb_csum_replace2(icmp_check, err->inner_ports[1], dport);
	err->inner_ports[0] = sport;
	err->inner_ports[1] = dport;

	__u16 old_ip_check = inner->check;
	__u16 ip_check = lb_csum_replace4(old_ip_check, inner->saddr, saddr);
	ip_check = lb_csum_replace4(ip_check, inner->daddr, daddr);
	icmp_check = lb_csum_replace4(icmp_check, inner->saddr, saddr);
	icmp_check = lb_csum_replace4(icmp_check, inner->daddr, daddr);
	icmp_check = lb_csum_replace2(icmp_check, old_ip_check, ip_check);
	inner->check = ip_check;
	inner->saddr = saddr;
	inner->daddr = daddr;
	err->icmp->checksum = icmp_check;

	__u16 outer = lb_csum_replace4(iph->check, iph->saddr, osaddr);
	outer = lb_csum_replace4(outer, iph->daddr, odaddr);
	__u16 old_word = bpf_htons(((__u16)iph->ttl << 8) | iph->protocol);
	iph->ttl -= 1;
	outer = lb_csum_replace2(outer, old_word, bpf_htons(((__u16)iph->ttl << 8) | iph->protocol));
	iph->check = outer;
	iph->saddr = osaddr;
	iph->daddr = odaddr;
}

#endif
