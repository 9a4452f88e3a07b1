/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Reports each dropped packet (raw tracepoint kfree_skb: no kprobes needed) that passes the filter,
 * with its drop reason, the kernel location that dropped it, where it was (namespace, interface),
 * who was running (and whether that is the packet's process), its flow and its kernel stack.
 * User space fills drop_filter BEFORE attaching drop_on_kfree_skb, and names reasons from the
 * running kernel, not from these headers.
 */
#include <linux/ptrace.h>
#include "kernel_layout.h"
#include "skb_flow.h"
#include "skb_filter.h"
#include "skb_drop.h"
#ifdef DROP_PCAP_FILTER
#include "pcap_match.h"
#include "pcap_filter.h" /* generated from the user's expression */
#endif

#ifndef DROP_PERF_PAGES
#define DROP_PERF_PAGES 64
#endif

BPF_PERF_OUTPUT(drop_events);
BPF_ARRAY(drop_filter, struct skb_filter, 1);
BPF_PERCPU_ARRAY(drop_counters, __u64, CNT_SLOTS);
BPF_PERCPU_ARRAY(drop_scratch, struct drop_scratch, 1);

static __always_inline void bump(__u32 index)
{
	__u64 *v = drop_counters.lookup(&index);
	if (v)
		*v += 1;
}

/* softirq_entry(vec) and softirq_exit(vec): which softirq this CPU serves, for running_context().
 * User space attaches them before drop_on_kfree_skb. */
int drop_softirq_entry(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 zero = 0;
	struct drop_scratch *s = drop_scratch.lookup(&zero);
	if (s)
		softirq_entered(&s->run, ctx->args[0]);
	return 0;
}

int drop_softirq_exit(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 zero = 0;
	struct drop_scratch *s = drop_scratch.lookup(&zero);
	if (s)
		softirq_left(&s->run);
	return 0;
}

/* kfree_skb(skb, location, reason[, rx_sk]): rx_sk exists since 6.11 (KFREE_SKB_HAS_RX_SK). */
int drop_on_kfree_skb(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 zero = 0;
	struct skb_filter *f = drop_filter.lookup(&zero);
	struct drop_scratch *s = drop_scratch.lookup(&zero);
	if (!f || !s)
		return 0;
	bump(CNT_SEEN);
	void *skb = (void *)ctx->args[0];
	__u32 reason = (__u32)ctx->args[2];
	if (!reason_wanted(f, reason))
		return 0;

	struct drop_event *ev = &s->ev;
	__builtin_memset(ev, 0, sizeof(*ev) - sizeof(ev->stack));
	void *rx_sk = 0;
#ifdef KFREE_SKB_HAS_RX_SK
	rx_sk = (void *)ctx->args[3];
#endif
	where_of_skb(skb, rx_sk, &ev->where);
	if (!where_wanted(f, &ev->where))
		return 0;
	__u16 proto = 0;
	bpf_probe_read_kernel(&proto, sizeof(proto), (char *)skb + SKB_PROTOCOL_OFF);
	parse_flow(skb, bpf_ntohs(proto), &ev->flow);
	if (!flow_wanted(f, &ev->flow))
		return 0;
#ifdef DROP_PCAP_FILTER
	__u32 wirelen = 0;
	__u32 snap = pcap_copy(skb, s->pcap_pkt, &wirelen);
	if (!snap || !pcap_filter_match(s->pcap_pkt, snap, wirelen))
		return 0;
#endif
	__u64 id = bpf_get_current_pid_tgid();
	ev->pid = id >> 32;
	ev->tid = (__u32)id;
	ev->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(&ev->comm, sizeof(ev->comm));
	running_context(&s->run, ctx, &ev->where);
	if (!process_wanted(f, ev->where.context, ev->pid, ev->cgroup_id, ev->comm))
		return 0;

	bump(CNT_MATCHED);
	ev->ts_ns = bpf_ktime_get_ns();
	ev->location = ctx->args[1];
	ev->skbaddr = (__u64)skb;
	ev->reason = reason;
#ifndef DROP_NO_STACKS
	ev->stack_bytes = bpf_get_stack(ctx, ev->stack, sizeof(ev->stack), 0);
	if (ev->stack_bytes < 0)
		bump(CNT_NO_STACK);
#endif
	if (drop_events.perf_submit(ctx, ev, sizeof(*ev)) == 0)
		bump(CNT_SUBMITTED);
	else
		bump(CNT_SUBMIT_FAILED);
	return 0;
}
