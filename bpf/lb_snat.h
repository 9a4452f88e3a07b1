/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * SNAT port allocation for the XDP load balancer. The including file defines the map accessors
 * lb_snat_slot(), lb_flow_find() and lb_flow_forget() first (bcc rewrites map calls only in the
 * main source file).
 *
 * A port is unique per SNAT address (lb_snat_ports has one slot per address and port), so a reply
 * finds its flow with one array lookup. Candidates, in order:
 *   1. a port derived from a hash of the client's 5-tuple: a flow whose entry was evicted gets its
 *      own port (and backend) back, so the backend's connection continues;
 *   2. a scan from a random (address, port) onwards, as Cilium retries from a random port: it reads
 *      only lb_snat_ports (each slot has a copy of its flow's state and time), then claims the
 *      first free slot with the full check. The scan is a bounded loop of LB_SNAT_SCAN slots: bcc
 *      0.26 loads each function on its own, so bpf_loop's callback (a BPF-to-BPF call) cannot be
 *      used, and the verifier follows at most ~1000 iterations of a bounded loop.
 * For TCP, before both: when the own port has not rested (another 5-tuple's flow holds it, or ended on
 * it less than LB_TO_TCP_TIME_WAIT ago), the LB_SNAT_REST_TRIES ports from one derived from the hash are
 * tried for one this 5-tuple had (so eviction does not cost a flow the port it was moved to) or else
 * one that has rested: the backend that served the old flow
 * may still hold it in TIME_WAIT, and clients give every connection its own TCP timestamp offset, so
 * about half of the new SYNs on such a port look older than the TIME_WAIT and are rejected (the client
 * retries after 8 ms on Linux, after a second or more elsewhere). Like netfilter, which keeps a closed
 * tuple for its TIME_WAIT; unlike netfilter, when no rested port is among those tried, a recent one
 * is taken rather than none (counted: more ports or SNAT addresses help).
 * A slot is free when empty, held by this same 5-tuple, or its flow is gone, closed or expired.
 * Taking a dead flow's slot deletes that flow's entry: its client must not write into the new flow.
 * A flow is refused when its own port and the LB_SNAT_SCAN ports after a random one are all held by
 * live flows: with random ports in use that is when the range is (nearly) full.
 * Two CPUs may pick the same free slot in the same instant; the later write wins and the other
 * flow's replies are dropped until its client retries (the window is a few instructions).
 */
#ifndef EBPF_NETWORKING_LB_SNAT_H
#define EBPF_NETWORKING_LB_SNAT_H

#include "xdp_lb.h"
#include "lb_flow.h"

#ifndef LB_SNAT_SCAN
#define LB_SNAT_SCAN 1024 /* the verifier follows no more than ~1500 iterations */
#endif
#ifndef LB_SNAT_REST_TRIES
#define LB_SNAT_REST_TRIES 16
#endif

static __always_inline int lb_key_equal(const struct lb_flow_key *a, const struct lb_flow_key *b)
{
	return a->saddr == b->saddr && a->daddr == b->daddr && a->sport == b->sport && a->dport == b->dport &&
	       a->proto == b->proto;
}

/* svc->snat[which] in a form the verifier accepts: the compiler drops a bound it can prove, the
 * verifier cannot, so hide the value from the compiler and mask it */
static __always_inline const struct lb_snat_addr *lb_svc_snat(const struct lb_service *svc, __u32 which)
{
	asm volatile("" : "+r"(which));
	return &svc->snat[which & (LB_SVC_SNAT_MAX - 1)];
}

/* The lb_snat_ports slot of (the service's SNAT address number which, port offset). */
static __always_inline struct lb_snat_slot *lb_svc_port_slot(const struct lb_service *svc, __u32 which, __u32 port_off)
{
	return lb_snat_slot(lb_svc_snat(svc, which)->index * LB_SNAT_PORTS + port_off);
}

/* Has this port, held last by another 5-tuple (callers check the key first: a 5-tuple's own
 * TIME_WAIT takes it back at once), rested: never used, a UDP port free again, or a TCP port free
 * for LB_TO_TCP_TIME_WAIT? */
static __always_inline int lb_snat_rested(const struct lb_snat_slot *slot, __u64 now)
{
	if (slot->key.proto == 0)
		return 1;
	if (slot->key.proto != IPPROTO_TCP)
		return now >= slot->free_at;
	return now >= slot->free_at + LB_TO_TCP_TIME_WAIT;
}

/* Look at LB_SNAT_REST_TRIES ports from one the flow's hash gives and move (*which, *port_off) to a port
 * this same 5-tuple holds, else (any_rested) to the first rested one. Returns 1 when it moved. The
 * start depends only on the 5-tuple, so a flow whose entry was evicted, or a retransmitted SYN whose
 * entry was lost, finds the port it was moved to again. Reads only; the caller claims with the full
 * check. */
static __always_inline int lb_snat_find_rested(const struct lb_flow_key *key, const struct lb_service *svc,
					       __u32 count, __u32 hash, __u64 now, int any_rested, __u32 *which,
					       __u32 *port_off)
{
	__u32 total = count * LB_SNAT_PORTS;
	__u32 start = ((hash << 16) | (hash >> 16)) % total;
	__u32 found = total; /* none */

#pragma nounroll
	for (__u32 i = 0; i < LB_SNAT_REST_TRIES; i++) {
		__u32 pos = (start + i) % total;
		struct lb_snat_slot *slot = lb_svc_port_slot(svc, pos / LB_SNAT_PORTS, pos % LB_SNAT_PORTS);
		if (!slot)
			break;
		if (lb_key_equal(&slot->key, key)) {
			found = pos;
			break;
		}
		if (any_rested && found == total && lb_snat_rested(slot, now))
			found = pos;
	}
	if (found == total)
		return 0;
	*which = found / LB_SNAT_PORTS;
	*port_off = found % LB_SNAT_PORTS;
	return 1;
}

/* Claim (snat_index, port offset) for key if it is free. Returns 1 when claimed, 2 when claimed by
 * reclaiming a dead flow's port, 0 when a live flow holds it. */
static __always_inline int lb_snat_try(__u32 snat_index, __u32 port_off, const struct lb_flow_key *key, __u64 now)
{
	__u32 idx = snat_index * LB_SNAT_PORTS + port_off;
	struct lb_snat_slot *slot = lb_snat_slot(idx);
	int result = 1;

	if (!slot || snat_index >= LB_MAX_SNAT_IPS)
		return 0;
	if (slot->key.proto != 0 && !lb_key_equal(&slot->key, key)) {
		struct lb_flow_key old = slot->key;
		struct lb_flow *holder = lb_flow_find(&old);
		if (holder && holder->snat_index == snat_index &&
		    holder->snat_port == bpf_htons((__u16)(LB_SNAT_PORT_MIN + port_off))) {
			if (!lb_flow_dead(holder, old.proto, now))
				return 0;
			lb_flow_forget(&old);
			result = 2;
		}
	}
	slot->key = *key;
	slot->free_at = now + lb_flow_timeout(0, key->proto);
	return result;
}

/* Pick the SNAT address and port for a new flow. Returns 0 and fills flow->snat_*, or -1. */
static __always_inline int lb_snat_pick(const struct lb_flow_key *key, const struct lb_service *svc, __u32 hash,
					__u64 now, int midstream, struct lb_flow *flow)
{
	__u32 count = svc->snat_count;
	__u32 which = 0, port_off = 0;
	int how = 0;

	if (count == 0 || count > LB_SVC_SNAT_MAX)
		return -1;
	which = hash % count;
	port_off = (hash >> 8) % LB_SNAT_PORTS;
	int resting = 0; /* the own port has not rested and no rested one was found: the flow takes another */
#if LB_TO_TCP_TIME_WAIT > 0
	if (key->proto == IPPROTO_TCP) {
		struct lb_snat_slot *own = lb_svc_port_slot(svc, which, port_off);
		if (own && !lb_key_equal(&own->key, key)) {
			/* not rested: another 5-tuple's flow holds the port or ended on it recently. A packet
			 * without SYN has lost its entry (evicted) and looks for the port it was moved to even
			 * when its own port has rested since. */
			int want = !lb_snat_rested(own, now);
			if ((want || midstream) &&
			    lb_snat_find_rested(key, svc, count, hash, now, want, &which, &port_off)) {
				if (want)
					lb_count_global(LB_CNT_PORT_RESTED);
			} else if (want) {
				resting = 1;
			}
		}
	}
#endif
	if (which < LB_SVC_SNAT_MAX)
		how = lb_snat_try(lb_svc_snat(svc, which)->index, port_off, key, now);
	if (!how) {
		__u32 total = count * LB_SNAT_PORTS;
		__u32 start = bpf_get_prandom_u32() % total;
		int found = 0;
		lb_count_global(LB_CNT_PORT_SCAN);
#pragma nounroll
		for (__u32 i = 0; i < LB_SNAT_SCAN; i++) {
			/* one exit test per slot: the verifier walks every iteration, and a branch that
			 * continues the loop would double its paths */
			__u32 pos = (start + i) % total;
			which = pos / LB_SNAT_PORTS;
			port_off = pos % LB_SNAT_PORTS;
			struct lb_snat_slot *slot = lb_svc_port_slot(svc, which, port_off);
			if (!slot)
				break;
			if (slot->key.proto == 0 || now >= slot->free_at) {
				found = 1;
				break;
			}
		}
		if (found)
			how = lb_snat_try(lb_svc_snat(svc, which)->index, port_off, key, now);
		if (!how)
			return -1;
	}
	if (which >= LB_SVC_SNAT_MAX)
		return -1;
	if (how == 2)
		lb_count_global(LB_CNT_PORT_RECLAIMED);
	if (resting)
		lb_count_global(LB_CNT_PORT_NOT_RESTED);
	flow->snat_index = lb_svc_snat(svc, which)->index;
	flow->snat_ip = lb_svc_snat(svc, which)->ip;
	flow->snat_port = bpf_htons((__u16)(LB_SNAT_PORT_MIN + port_off));
	return 0;
}

#endif
