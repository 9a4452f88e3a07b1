/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Flow lifecycle of the XDP load balancer: state from TCP flags, idle timeouts, and when a flow's
 * SNAT port counts as free again.
 *
 * - SYN only (no answer yet): LB_TO_TCP_SYN. Backend answered: LB_TO_TCP_EST. A FIN either way:
 *   LB_TO_TCP_CLOSING. UDP: LB_TO_UDP. Timeouts run from the last packet either way.
 * - "Closed" = FIN both ways, or a RST. A closed flow still translates its last packets (the final
 *   ACK) until the closing timeout, but its SNAT port may be taken by a new flow at once (a late
 *   packet of the old flow then no longer finds it). New TCP flows prefer ports that have rested
 *   for LB_TO_TCP_TIME_WAIT since their flow ended (bpf/lb_snat.h): the backend's TIME_WAIT accepts
 *   a new SYN only with a newer timestamp, and another client's connection has its own offset.
 * - The clock is jiffies (bpf_jiffies64, inlined: ~0 ns; bpf_ktime_get_ns and the coarse variant
 *   cost ~40 ns here) and last_seen is written at most once per LB_TOUCH, so an established flow is
 *   not a map write per packet. last_seen keeps the low 32 bits: ages compare modulo 2^32 jiffies
 *   (49 days at HZ 1000), far above the longest timeout (7 days).
 */
#ifndef EBPF_NETWORKING_LB_FLOW_H
#define EBPF_NETWORKING_LB_FLOW_H

#include "xdp_lb.h"

static __always_inline __u64 lb_now(void)
{
	return bpf_jiffies64();
}

static __always_inline int lb_flow_closed(__u8 state)
{
	return (state & LB_ST_RST) || (state & (LB_ST_FIN_FWD | LB_ST_FIN_REPLY)) == (LB_ST_FIN_FWD | LB_ST_FIN_REPLY);
}

static __always_inline __u32 lb_flow_timeout(__u8 state, __u8 proto)
{
	if (proto == IPPROTO_UDP)
		return LB_TO_UDP;
	if (state & (LB_ST_RST | LB_ST_FIN_FWD | LB_ST_FIN_REPLY))
		return LB_TO_TCP_CLOSING;
	if (state & LB_ST_REPLIED)
		return LB_TO_TCP_EST;
	return LB_TO_TCP_SYN;
}

static __always_inline int lb_flow_expired(const struct lb_flow *flow, __u8 proto, __u64 now)
{
	return (__u32)((__u32)now - flow->last_seen) > lb_flow_timeout(flow->state, proto);
}

/* May a new flow take this flow's SNAT port? */
static __always_inline int lb_flow_dead(const struct lb_flow *flow, __u8 proto, __u64 now)
{
	return lb_flow_closed(flow->state) || lb_flow_expired(flow, proto, now);
}

/* State bits a TCP header adds for the given direction (0 for UDP). */
static __always_inline __u8 lb_tcp_state_bits(const struct tcphdr *th, int reply)
{
	__u8 bits = 0;
	if (th->rst)
		bits |= LB_ST_RST;
	if (th->fin)
		bits |= reply ? LB_ST_FIN_REPLY : LB_ST_FIN_FWD;
	if (reply)
		bits |= LB_ST_REPLIED;
	return bits;
}

/*
 * Record a packet on a flow: new state bits and the time. Writes only when something changed or
 * the time moved by LB_TOUCH. A state change restarts the timeout (closing runs from the FIN).
 * Returns 1 when it wrote: the caller then refreshes the flow's lb_snat_ports slot.
 */
static __always_inline int lb_flow_touch(struct lb_flow *flow, __u8 bits, __u64 now)
{
	if ((flow->state | bits) != flow->state) {
		flow->state |= bits;
		flow->last_seen = (__u32)now;
		return 1;
	}
	if ((__u32)((__u32)now - flow->last_seen) >= LB_TOUCH) {
		flow->last_seen = (__u32)now;
		return 1;
	}
	return 0;
}

/* When the flow's SNAT port is free again unless another packet comes (call right after a touch
 * that wrote): now once it is closed. */
static __always_inline __u64 lb_flow_free_at(const struct lb_flow *flow, __u8 proto, __u64 now)
{
	if (lb_flow_closed(flow->state))
		return now;
	return now + lb_flow_timeout(flow->state, proto) + 1;
}

#endif
