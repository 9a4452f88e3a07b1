/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The next hop to a backend for a new flow. bpf_fib_lookup walks the routing table and the
 * neighbour table, several cache lines each: per new flow it was about a third of the new-flow
 * path's cost. Its answer for a backend is kept in lb_nexthops and reused for LB_NEXTHOP_TTL (one
 * second), so with many new flows per second the FIB is asked about once a second per CPU, backend
 * and SNAT address, and a route or neighbour change (a backend's MAC, a new gateway) reaches new flows within a second.
 * An answer is reused only for the same question (backend address, source address, ingress
 * interface, protocol), so another backend in the same slot or another ingress interface asks
 * again; each SNAT address of a service has its own slot. Failed lookups (no neighbour entry yet,
 * the backend MAC from user space used instead) are not kept: such flows ask the FIB every time.
 * The map is per CPU: a flow keeps its next hop for life, so it must never copy an entry half
 * written by another CPU (XDP does not move between CPUs while it runs). The price is one lookup
 * per CPU, backend and SNAT address a second.
 * The including file defines lb_nexthop_slot() (bcc rewrites map calls only in the main source).
 */
#ifndef EBPF_NETWORKING_LB_NEXTHOP_H
#define EBPF_NETWORKING_LB_NEXTHOP_H

#include "xdp_lb.h"

/* Fills *out with the way to dst (backend) and returns BPF_FIB_LKUP_RET_SUCCESS, or returns the FIB's
 * error (then *out is untouched). */
static __always_inline int lb_nexthop_lookup(struct xdp_md *ctx, __u32 be_index, __u32 snat_index, __be32 src,
					     __be32 dst, __u8 proto, __u64 now, struct lb_nexthop *out)
{
	struct lb_nexthop *cached = lb_nexthop_slot(be_index, snat_index);
	__u32 in = ctx->ingress_ifindex;

	if (cached && cached->backend_ip == dst && cached->src_ip == src && cached->in_ifindex == in &&
	    cached->proto == proto && (__u32)((__u32)now - cached->stamp) < LB_NEXTHOP_TTL) {
		*out = *cached;
		return BPF_FIB_LKUP_RET_SUCCESS;
	}
	lb_count_global(LB_CNT_NEXTHOP_LOOKUP);
	struct bpf_fib_lookup fib = {};
	fib.family = AF_INET;
	fib.l4_protocol = proto;
	fib.ipv4_src = src;
	fib.ipv4_dst = dst;
	fib.ifindex = in;
	int rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return rc;
	out->backend_ip = dst;
	out->src_ip = src;
	out->in_ifindex = in;
	out->out_ifindex = fib.ifindex;
	out->stamp = (__u32)now;
	out->proto = proto;
	out->direct = fib.ipv4_dst == dst; /* the FIB puts a gateway's address in ipv4_dst */
	__builtin_memcpy(out->smac, fib.smac, ETH_ALEN);
	__builtin_memcpy(out->dmac, fib.dmac, ETH_ALEN);
	if (cached)
		*cached = *out;
	return rc;
}

#endif
