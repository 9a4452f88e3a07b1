/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Follows packets through the kernel without kprobes: every networking raw tracepoint that carries
 * an skb looks the skb's address up in path_packets; an skb not followed yet is checked against the
 * filter (namespace, interface, flow) and, if it matches and max_packets allows, followed from there.
 * Each step is reported with time, namespace, interface, flow and running context; kfree_skb (drop)
 * and consume_skb end the path and forget the address, since the kernel reuses it. fib_table_lookup
 * has no skb: it is tied to the followed skb last seen on the same CPU within CORRELATE_NS. User
 * space fills path_filter and path_config BEFORE attaching, and tracks softirqs before the steps.
 */
#include "kernel_layout.h"
#include "skb_flow.h"
#include "skb_filter.h"
#include "skb_path.h"

BPF_PERF_OUTPUT(path_events);
BPF_ARRAY(path_filter, struct skb_filter, 1);
BPF_ARRAY(path_config, __u64, 2);     /* 0: max packets to follow, 1: next packet id */
BPF_TABLE("lru_hash", __u64, struct path_packet, path_packets, 4096);
BPF_PERCPU_ARRAY(path_counters, __u64, PCNT_SLOTS);
BPF_PERCPU_ARRAY(path_cpu_current, struct path_current, 1);

static __always_inline void pbump(__u32 index)
{
	__u64 *v = path_counters.lookup(&index);
	if (v)
		*v += 1;
}

static __always_inline void emit(void *ctx, struct path_step *st, struct path_current *cur)
{
	running_context(&cur->run, ctx, &st->where);
	st->ts_ns = bpf_ktime_get_ns();
	st->cpu = bpf_get_smp_processor_id();
	if (path_events.perf_submit(ctx, st, sizeof(*st)) == 0)
		pbump(PCNT_STEPS);
	else
		pbump(PCNT_SUBMIT_FAILED);
}

/* The followed packet this skb is, starting to follow it if it matches: 0 when not followed. */
static __always_inline __u32 follow(void *skb, void *dev, struct path_step *st)
{
	__u64 key = (__u64)skb;
	struct path_packet *known = path_packets.lookup(&key);
	if (dev)
		where_of_dev(dev, &st->where);
	else
		where_of_skb(skb, 0, &st->where);
	__u16 proto = 0;
	bpf_probe_read_kernel(&proto, sizeof(proto), (char *)skb + SKB_PROTOCOL_OFF);
	parse_flow(skb, bpf_ntohs(proto), &st->flow);
	if (known) {
		known->steps += 1;
		return known->packet;
	}
	__u32 zero = 0, one = 1;
	struct skb_filter *f = path_filter.lookup(&zero);
	__u64 *max = path_config.lookup(&zero);
	__u64 *next = path_config.lookup(&one);
	if (!f || !max || !next)
		return 0;
	if (!where_wanted(f, &st->where) || !flow_wanted(f, &st->flow))
		return 0;
	__u64 id = __sync_fetch_and_add(next, 1) + 1;
	if (id > *max) {
		pbump(PCNT_NOT_TRACKED);
		return 0;
	}
	struct path_packet fresh = {.packet = (__u32)id, .steps = 1};
	if (path_packets.insert(&key, &fresh) != 0) { /* BPF_NOEXIST */
		pbump(PCNT_NOT_TRACKED);
		return 0;
	}
	return (__u32)id;
}

static __always_inline void remember_on_cpu(struct path_current *cur, void *skb, __u32 packet)
{
	cur->skbaddr = (__u64)skb;
	cur->packet = packet;
	cur->ts_ns = bpf_ktime_get_ns();
}

/* dev: the device the tracepoint names (transmit), else 0 for skb->dev; veth moves skb->dev to the
 * peer before net_dev_xmit fires */
static __always_inline int step(void *ctx, void *skb, void *dev, __u16 kind, __s32 a, __u64 location)
{
	__u32 zero = 0;
	struct path_current *cur = path_cpu_current.lookup(&zero);
	if (!skb || !cur)
		return 0;
	struct path_step st = {};
	__u32 packet = follow(skb, dev, &st);
	if (!packet)
		return 0;
	st.skbaddr = (__u64)skb;
	st.packet = packet;
	st.kind = kind;
	st.a = a;
	st.location = location;
	emit(ctx, &st, cur);
	if (kind == STEP_KFREE_SKB || kind == STEP_CONSUME_SKB) {
		__u64 key = (__u64)skb;
		path_packets.delete(&key);
		remember_on_cpu(cur, 0, 0);
	} else {
		remember_on_cpu(cur, skb, packet);
	}
	return 0;
}

/* softirq_entry(vec) and softirq_exit(vec): which softirq this CPU serves, for running_context().
 * User space attaches them before the steps. */
int path_softirq_entry(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 zero = 0;
	struct path_current *cur = path_cpu_current.lookup(&zero);
	if (cur)
		softirq_entered(&cur->run, ctx->args[0]);
	return 0;
}

int path_softirq_exit(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 zero = 0;
	struct path_current *cur = path_cpu_current.lookup(&zero);
	if (cur)
		softirq_left(&cur->run);
	return 0;
}

int path_netif_receive_skb(struct bpf_raw_tracepoint_args *ctx)
{
	return step(ctx, (void *)ctx->args[0], 0, STEP_NETIF_RECEIVE_SKB, 0, 0);
}

int path_netif_rx(struct bpf_raw_tracepoint_args *ctx)
{
	return step(ctx, (void *)ctx->args[0], 0, STEP_NETIF_RX, 0, 0);
}

int path_napi_gro_receive_entry(struct bpf_raw_tracepoint_args *ctx)
{
	return step(ctx, (void *)ctx->args[0], 0, STEP_NAPI_GRO_RECEIVE, 0, 0);
}

int path_net_dev_queue(struct bpf_raw_tracepoint_args *ctx)
{
	return step(ctx, (void *)ctx->args[0], 0, STEP_NET_DEV_QUEUE, 0, 0);
}

/* net_dev_start_xmit(skb, dev) */
int path_net_dev_start_xmit(struct bpf_raw_tracepoint_args *ctx)
{
	return step(ctx, (void *)ctx->args[0], (void *)ctx->args[1], STEP_NET_DEV_START_XMIT, 0, 0);
}

/* net_dev_xmit(skb, rc, dev, skb_len) */
int path_net_dev_xmit(struct bpf_raw_tracepoint_args *ctx)
{
	return step(ctx, (void *)ctx->args[0], (void *)ctx->args[2], STEP_NET_DEV_XMIT, (__s32)ctx->args[1], 0);
}

/* sock_rcvqueue_full(sk, skb) */
int path_sock_rcvqueue_full(struct bpf_raw_tracepoint_args *ctx)
{
	return step(ctx, (void *)ctx->args[1], 0, STEP_SOCK_RCVQUEUE_FULL, 0, 0);
}

/* udp_fail_queue_rcv_skb(rc, sk, skb) */
int path_udp_fail_queue_rcv_skb(struct bpf_raw_tracepoint_args *ctx)
{
	return step(ctx, (void *)ctx->args[2], 0, STEP_UDP_FAIL_QUEUE, (__s32)ctx->args[0], 0);
}

/* tcp_retransmit_skb(sk, skb, ...) */
int path_tcp_retransmit_skb(struct bpf_raw_tracepoint_args *ctx)
{
	return step(ctx, (void *)ctx->args[1], 0, STEP_TCP_RETRANSMIT, 0, 0);
}

/* kfree_skb(skb, location, reason, ...) */
int path_kfree_skb(struct bpf_raw_tracepoint_args *ctx)
{
	return step(ctx, (void *)ctx->args[0], 0, STEP_KFREE_SKB, (__s32)ctx->args[2], ctx->args[1]);
}

/* consume_skb(skb, location) */
int path_consume_skb(struct bpf_raw_tracepoint_args *ctx)
{
	return step(ctx, (void *)ctx->args[0], 0, STEP_CONSUME_SKB, 0, ctx->args[1]);
}

/* fib_table_lookup(tb_id, flp, nhc, err): no skb, so the one last followed on this CPU, if recent */
int path_fib_table_lookup(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 zero = 0;
	struct path_current *cur = path_cpu_current.lookup(&zero);
	if (!cur || !cur->skbaddr || bpf_ktime_get_ns() - cur->ts_ns > CORRELATE_NS)
		return 0;
	struct path_step st = {};
	st.skbaddr = cur->skbaddr;
	st.packet = cur->packet;
	st.kind = STEP_FIB_LOOKUP;
	st.a = (__s32)ctx->args[0];
	st.b = (__s32)ctx->args[3];
	emit(ctx, &st, cur);
	return 0;
}
