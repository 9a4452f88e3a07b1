/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * One step of a packet's path: shared by bpf/skb_path.bpf.c and
 * plugins/module_utils/path_trace.py. Needs kernel_layout.h and skb_flow.h.
 */
#ifndef EBPF_NETWORKING_SKB_PATH_H
#define EBPF_NETWORKING_SKB_PATH_H

/* step kinds: the tracepoint that saw the skb */
#define STEP_NETIF_RECEIVE_SKB 1
#define STEP_NETIF_RX 2
#define STEP_NAPI_GRO_RECEIVE 3
#define STEP_NET_DEV_QUEUE 4
#define STEP_NET_DEV_START_XMIT 5
#define STEP_NET_DEV_XMIT 6
#define STEP_FIB_LOOKUP 7          /* no skb argument: correlated with the skb last seen on this CPU */
#define STEP_SOCK_RCVQUEUE_FULL 8
#define STEP_UDP_FAIL_QUEUE 9
#define STEP_TCP_RETRANSMIT 10
#define STEP_KFREE_SKB 11          /* the end: dropped */
#define STEP_CONSUME_SKB 12        /* the end: consumed (delivered, or freed after transmit) */

#define PCNT_STEPS 0               /* steps submitted */
#define PCNT_SUBMIT_FAILED 1       /* steps lost: perf buffer full */
#define PCNT_NOT_TRACKED 2         /* matching packets not followed: max_packets reached or table full */
#define PCNT_SLOTS 3

#define CORRELATE_NS 200000        /* a fib lookup belongs to the skb seen on its CPU this recently */

struct path_step {
	__u64 ts_ns;
	__u64 skbaddr;
	__u64 location;      /* kfree_skb/consume_skb: the caller */
	__u32 packet;        /* id of the followed packet (skb addresses are reused) */
	__u16 kind;          /* STEP_* */
	__u16 cpu;
	__s32 a;             /* kfree_skb: reason; net_dev_xmit: rc; fib: table id */
	__s32 b;             /* fib: err */
	struct where where;
	struct skb_flow flow;
};

struct path_packet {
	__u32 packet;
	__u32 steps;
};

/* per CPU: the followed skb last seen (for fib_table_lookup), and running_context()'s state */
struct path_current {
	__u64 skbaddr;
	__u64 ts_ns;
	__u32 packet;
	__u32 pad;
	struct running_state run;
};

#endif
