/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Shared by bpf/skb_drop.bpf.c and user space (plugins/module_utils/drop_trace.py unpacks the same
 * layout). Needs kernel_layout.h and skb_flow.h.
 */
#ifndef EBPF_NETWORKING_SKB_DROP_H
#define EBPF_NETWORKING_SKB_DROP_H

#ifndef DROP_MAX_FRAMES
#define DROP_MAX_FRAMES 32
#endif

/* Per-CPU counters: index into drop_counters. Nothing is lost without one of these moving. */
#define CNT_SEEN 0           /* kfree_skb calls */
#define CNT_MATCHED 1        /* passed the filter */
#define CNT_SUBMITTED 2      /* written to the perf buffer */
#define CNT_SUBMIT_FAILED 3  /* perf buffer full: the event is lost (user space also counts lost samples) */
#define CNT_NO_STACK 4       /* bpf_get_stack failed: the event has no stack */
#define CNT_SLOTS 5

struct drop_event {
	__u64 ts_ns;
	__u64 location;
	__u64 cgroup_id;
	__u64 skbaddr;
	__u32 pid;
	__u32 tid;
	__u32 reason;
	__s32 stack_bytes;   /* bytes of stack[] filled, or a negative errno */
	char comm[16];
	struct where where;
	struct skb_flow flow;
	__u64 stack[DROP_MAX_FRAMES];
};

/* The per-CPU slot the event is built in (too big for the 512-byte BPF stack), plus the CPU's state
 * for running_context(). */
struct drop_scratch {
	struct drop_event ev;
	struct running_state run;
	__u8 pcap_pkt[512];  /* the packet copy a pcap filter reads (2 x PCAP_SNAP: the verifier's bound) */
};

#endif
