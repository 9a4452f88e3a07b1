/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ICMP "fragmentation needed" (type 3 code 4, RFC 1191) from the load balancer, for a DF packet that
 * no longer fits the egress MTU once a tunnel header is added (forwarding: ipip). The kernel's own
 * ipip device answers the same way; without it a client whose segments are full-size black-holes.
 * Katran's send_icmp4_too_big does this too; our own code.
 *
 * The received frame becomes the answer in place: trimmed to the quote (the offending IP header with
 * its options and the 8 bytes after it, what RFC 792 asks and all Linux's TCP needs to match the
 * socket and check the sequence number), then grown at the head by a new IPv4 + ICMP header. It goes
 * back out the way it came (XDP_TX), MACs swapped, from the address the client sent to: the client
 * matches the error by the quote, and its conntrack relates it to the flow.
 *
 * Not answered (the caller drops and counts): packets without DF (the sender allowed fragmenting,
 * which XDP cannot do, and fragments to a VIP are dropped anyway), sources no ICMP may go to
 * (RFC 1812 4.3.2.7: 0/8, 127/8, multicast, class E and broadcast), and ICMP itself (the caller
 * never tunnels ICMP: no error about an error).
 *
 * No rate limit: the kernel exempts exactly this message from icmp_ratelimit and icmp_msgs_per_sec
 * (icmpv4_mask_allow: "Don't limit PMTU discovery"), each answer is smaller than the packet that
 * caused it (no amplification: a spoofer gets less back than it sends), and a real client stops
 * sending full-size packets after the first answer.
 */
#ifndef EBPF_NETWORKING_LB_ICMP_TOO_BIG_H
#define EBPF_NETWORKING_LB_ICMP_TOO_BIG_H

#include <linux/if_ether.h>
#include <linux/icmp.h>
#include <linux/in.h>
#include <linux/ip.h>
#include "csum.h"
#include "lb_ipv4.h"

#define LB_ICMP_TOS 0xc0         /* IPTOS_PREC_INTERNETCONTROL, as the kernel's ICMP errors */
#define LB_ICMP_TTL 64
#define LB_ICMP_QUOTE_L4 8       /* bytes quoted after the offending IP header */
#define LB_ICMP_MIN_MTU 68       /* RFC 791: no path MTU below this is announced */
#define LB_ICMP_QUOTE_MAX (60 + LB_ICMP_QUOTE_L4) /* an IP header with 40 bytes of options + 8 */

/* May an ICMP error go to this source? Not to 0/8, 127/8, 224/4 multicast or 240/4 (broadcast too). */
static __always_inline int lb_icmp_source_ok(__be32 saddr)
{
	__u8 first = ((const __u8 *)&saddr)[0];
	return first != 0 && first != 127 && first < 224;
}

/*
 * Turn the received frame (a DF IPv4 packet too big for a next hop of mtu bytes) into the ICMP
 * fragmentation-needed answer to its sender. Returns 0 when the frame now holds the answer (the
 * caller returns XDP_TX), -1 when no answer may be sent (the frame is unchanged; caller drops).
 */
static __always_inline int lb_icmp_too_big(struct xdp_md *ctx, __u32 mtu)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);

	if ((void *)(iph + 1) > data_end || !(iph->frag_off & bpf_htons(LB_IP_DF)) || iph->protocol == IPPROTO_ICMP ||
	    !lb_icmp_source_ok(iph->saddr) || mtu < LB_ICMP_MIN_MTU)
		return -1;
	__u32 quote_len = iph->ihl * 4 + LB_ICMP_QUOTE_L4;
	__u32 frame_len = data_end - data;
	/* sum the quote while the packet is known to be long (it is too big for a tunnel, so far longer
	 * than the longest quote): constant offsets from iph, which the verifier can check */
	const __u16 *word = (const __u16 *)iph;
	if (iph->ihl < 5 || (void *)word + LB_ICMP_QUOTE_MAX > data_end)
		return -1;
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < LB_ICMP_QUOTE_MAX / 2; i++) {
		if ((__u32)i < quote_len / 2)
			sum += word[i];
	}

	__u8 client_mac[ETH_ALEN], our_mac[ETH_ALEN];
	__builtin_memcpy(client_mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(our_mac, eth->h_dest, ETH_ALEN);
	__be32 client = iph->saddr;
	__be32 us = iph->daddr;

	/* keep the quote, then room for the new headers in front of it */
	if (bpf_xdp_adjust_tail(ctx, (int)(sizeof(*eth) + quote_len) - (int)frame_len))
		return -1;
	if (bpf_xdp_adjust_head(ctx, 0 - (int)(sizeof(struct iphdr) + sizeof(struct icmphdr))))
		return -1; /* the frame is trimmed: the caller drops it anyway */

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct icmphdr *icmp = (void *)(ip + 1);
	if ((void *)(icmp + 1) > data_end)
		return -1;
	__builtin_memcpy(eth->h_dest, client_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, our_mac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);

	/* DF: an atomic datagram, which needs no unique ID (RFC 6864) */
	lb_ipv4_write_header(ip, LB_ICMP_TOS, bpf_htons((__u16)(sizeof(*ip) + sizeof(*icmp) + quote_len)), 0,
			     bpf_htons(LB_IP_DF), LB_ICMP_TTL, IPPROTO_ICMP, us, client);

	icmp->type = ICMP_DEST_UNREACH;
	icmp->code = ICMP_FRAG_NEEDED;
	icmp->checksum = 0;
	icmp->un.frag.__unused = 0;
	icmp->un.frag.mtu = bpf_htons((__u16)mtu);

	/* the ICMP checksum covers its header and the quote (summed above; the checksum field is 0) */
	sum += bpf_htons((ICMP_DEST_UNREACH << 8) | ICMP_FRAG_NEEDED) + icmp->un.frag.mtu;
	icmp->checksum = lb_csum_fold(sum);
	return 0;
}

#endif
