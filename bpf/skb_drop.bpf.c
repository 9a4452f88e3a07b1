/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Traces skb:kfree_skb (a tracepoint: no kprobes needed) and reports each dropped packet that
 * passes the filter with its drop reason, the kernel location that dropped it, the process, the
 * 5-tuple and the kernel stack. User space names reasons from the running kernel (tracepoint
 * format or BTF), not from these headers.
 */
#include <linux/ptrace.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/if_ether.h>
#if __has_include(<net/dropreason-core.h>)
#include <net/dropreason-core.h>
#elif __has_include(<net/dropreason.h>)
#include <net/dropreason.h>
#endif
#include "skb_drop.h"

BPF_PERF_OUTPUT(drop_events);
BPF_STACK_TRACE(drop_stacks, DROP_MAX_STACKS);
BPF_ARRAY(drop_filter, struct drop_filter, 1);
BPF_PERCPU_ARRAY(drop_seen, __u64, 2); /* 0: drops seen, 1: drops reported */

static __always_inline int bytes_equal(const __u8 *a, const __u8 *b, int n)
{
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (i < n && a[i] != b[i])
			return 0;
	}
	return 1;
}

static __always_inline void map_ip4(__u8 *dst, __be32 ip)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &ip, 4);
}

static __always_inline void bump(__u32 index)
{
	__u64 *v = drop_seen.lookup(&index);
	if (v)
		*v += 1;
}

/* Fill family, addresses, protocol and ports from the packet's network header, if it has one. */
static __always_inline void parse_packet(void *skb, __u16 protocol, struct drop_event *ev)
{
	unsigned char *head = 0;
	__u16 nh = 0;
	bpf_probe_read_kernel(&head, sizeof(head), (char *)skb + SKB_HEAD_OFF);
	bpf_probe_read_kernel(&nh, sizeof(nh), (char *)skb + SKB_NETWORK_HEADER_OFF);
	if (!head || nh == (__u16)~0U)
		return;
	unsigned char *l3 = head + nh;
	unsigned char *l4 = 0;
	if (protocol == ETH_P_IP) {
		struct iphdr ip = {};
		if (bpf_probe_read_kernel(&ip, sizeof(ip), l3) || ip.version != 4)
			return;
		ev->family = 4;
		map_ip4(ev->saddr, ip.saddr);
		map_ip4(ev->daddr, ip.daddr);
		ev->l4proto = ip.protocol;
		l4 = l3 + ip.ihl * 4;
	} else if (protocol == ETH_P_IPV6) {
		struct ipv6hdr ip6 = {};
		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), l3) || ip6.version != 6)
			return;
		ev->family = 6;
		__builtin_memcpy(ev->saddr, &ip6.saddr, 16);
		__builtin_memcpy(ev->daddr, &ip6.daddr, 16);
		ev->l4proto = ip6.nexthdr;
		l4 = l3 + sizeof(ip6);
	} else {
		return;
	}
	if (ev->l4proto == IPPROTO_TCP || ev->l4proto == IPPROTO_UDP) {
		__be16 ports[2] = {};
		if (bpf_probe_read_kernel(ports, sizeof(ports), l4) == 0) {
			ev->sport = bpf_ntohs(ports[0]);
			ev->dport = bpf_ntohs(ports[1]);
		}
	}
}

static __always_inline int wanted(const struct drop_filter *f, const struct drop_event *ev)
{
	if (f->pid && f->pid != ev->pid)
		return 0;
	if (f->cgroup_id && f->cgroup_id != ev->cgroup_id)
		return 0;
	if (f->has_comm && !bytes_equal((const __u8 *)f->comm, (const __u8 *)ev->comm, 16))
		return 0;
	if (f->reasons[0] | f->reasons[1] | f->reasons[2] | f->reasons[3]) {
		__u32 r = ev->reason;
		if (r >= 256)
			return 0;
		__u64 word = f->reasons[(r >> 6) & 3];
		if (!(word & (1ULL << (r & 63))))
			return 0;
	}
	if (f->l4proto && f->l4proto != ev->l4proto)
		return 0;
	if (f->sport && f->sport != ev->sport)
		return 0;
	if (f->dport && f->dport != ev->dport)
		return 0;
	if (f->has_saddr && (!ev->family || !bytes_equal(f->saddr, ev->saddr, 16)))
		return 0;
	if (f->has_daddr && (!ev->family || !bytes_equal(f->daddr, ev->daddr, 16)))
		return 0;
	return 1;
}

TRACEPOINT_PROBE(skb, kfree_skb)
{
	__u32 zero = 0;
	struct drop_filter *f = drop_filter.lookup(&zero);
	if (!f)
		return 0;
	bump(0);

	struct drop_event ev = {};
	__u64 id = bpf_get_current_pid_tgid();
	ev.ts_ns = bpf_ktime_get_ns();
	ev.location = (__u64)args->location;
	ev.cgroup_id = bpf_get_current_cgroup_id();
	ev.pid = id >> 32;
	ev.tid = (__u32)id;
	ev.reason = (__u32)args->reason;
	ev.protocol = args->protocol; /* the tracepoint stores it in host order already */
	bpf_get_current_comm(&ev.comm, sizeof(ev.comm));
	parse_packet(args->skbaddr, ev.protocol, &ev);
	if (!wanted(f, &ev))
		return 0;
	ev.stack_id = drop_stacks.get_stackid(args, 0);
	bump(1);
	drop_events.perf_submit(args, &ev, sizeof(ev));
	return 0;
}
