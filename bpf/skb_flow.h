/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The addresses, protocol and ports of an skb, read from its network header. Addresses are 16
 * bytes, IPv4 mapped as ::ffff:a.b.c.d; ports in host byte order. Needs kernel_layout.h.
 */
#ifndef EBPF_NETWORKING_SKB_FLOW_H
#define EBPF_NETWORKING_SKB_FLOW_H

#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/if_ether.h>

#define FRAG_NONE 0
#define FRAG_FIRST 1   /* first fragment: ports present */
#define FRAG_LATER 2   /* later fragment: no transport header, so no ports */

struct skb_flow {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 ethertype;     /* host order */
	__u16 sport;
	__u16 dport;
	__u8 l4proto;
	__u8 family;         /* 4, 6, or 0 when the packet was not parsed */
	__u8 fragment;       /* FRAG_* */
	__u8 pad[3];
};

static __always_inline void map_ip4(__u8 *dst, __be32 ip)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &ip, 4);
}

/*
 * An skb whose network header was never set has network_header == 0 (alloc_skb zeroes it; only
 * mac_header and transport_header start as ~0), so 0 means "no header yet".
 */
static __always_inline void parse_flow(void *skb, __u16 ethertype, struct skb_flow *fl)
{
	unsigned char *head = 0;
	__u16 nh = 0;
	fl->ethertype = ethertype;
	bpf_probe_read_kernel(&head, sizeof(head), (char *)skb + SKB_HEAD_OFF);
	bpf_probe_read_kernel(&nh, sizeof(nh), (char *)skb + SKB_NETWORK_HEADER_OFF);
	if (!head || nh == 0 || nh == (__u16)~0U)
		return;
	unsigned char *l3 = head + nh;
	unsigned char *l4 = 0;
	if (ethertype == ETH_P_IP) {
		struct iphdr ip = {};
		if (bpf_probe_read_kernel(&ip, sizeof(ip), l3) || ip.version != 4 || ip.ihl < 5)
			return;
		fl->family = 4;
		map_ip4(fl->saddr, ip.saddr);
		map_ip4(fl->daddr, ip.daddr);
		fl->l4proto = ip.protocol;
		__u16 frag = bpf_ntohs(ip.frag_off);
		if (frag & 0x1fff)
			fl->fragment = FRAG_LATER;
		else if (frag & 0x2000)
			fl->fragment = FRAG_FIRST;
		l4 = l3 + ip.ihl * 4;
	} else if (ethertype == ETH_P_IPV6) {
		struct ipv6hdr ip6 = {};
		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), l3) || ip6.version != 6)
			return;
		fl->family = 6;
		__builtin_memcpy(fl->saddr, &ip6.saddr, 16);
		__builtin_memcpy(fl->daddr, &ip6.daddr, 16);
		fl->l4proto = ip6.nexthdr;
		l4 = l3 + sizeof(ip6);
		if (fl->l4proto == IPPROTO_FRAGMENT) {
			/* struct frag_hdr: nexthdr, reserved, frag_off (offset << 3 | flags), id */
			__u8 fh[4] = {};
			if (bpf_probe_read_kernel(fh, sizeof(fh), l4))
				return;
			fl->l4proto = fh[0];
			__u16 off = ((__u16)fh[2] << 8 | fh[3]) & 0xfff8;
			fl->fragment = off ? FRAG_LATER : FRAG_FIRST;
			l4 += 8;
		}
	} else {
		return;
	}
	if (fl->fragment == FRAG_LATER)
		return;
	if (fl->l4proto == IPPROTO_TCP || fl->l4proto == IPPROTO_UDP) {
		__be16 ports[2] = {};
		if (bpf_probe_read_kernel(ports, sizeof(ports), l4) == 0) {
			fl->sport = bpf_ntohs(ports[0]);
			fl->dport = bpf_ntohs(ports[1]);
		}
	}
}

#endif
