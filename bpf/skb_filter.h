/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Which packets a trace wants: namespace, interface, CIDR, port ranges, protocol, reason, and the
 * process (only meaningful in process context). Filled by user space before the program is
 * attached (plugins/module_utils/drop_trace.py packs the same layout). Needs kernel_layout.h and
 * skb_flow.h.
 */
#ifndef EBPF_NETWORKING_SKB_FILTER_H
#define EBPF_NETWORKING_SKB_FILTER_H

struct skb_filter {
	__u64 reasons[4];    /* bitmask of drop reasons below 256; all zero: any */
	__u64 cgroup_id;     /* 0: any */
	__u32 pid;           /* process (tgid); 0: any */
	__u32 netns;         /* namespace inode; 0: any */
	__u32 ifindex;       /* 0: any */
	__u16 sport_lo;      /* port ranges, inclusive; hi 0: any */
	__u16 sport_hi;
	__u16 dport_lo;
	__u16 dport_hi;
	__u8 l4proto;        /* 0: any */
	__u8 saddr_bits;     /* prefix length on the 16-byte (mapped) address; 0: any */
	__u8 daddr_bits;
	__u8 has_comm;
	__u8 has_ifname;
	__u8 pad[3];
	char comm[16];
	char ifname[16];
	__u8 saddr[16];
	__u8 daddr[16];
};

static __always_inline int bytes_equal16(const __u8 *a, const __u8 *b)
{
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (a[i] != b[i])
			return 0;
	}
	return 1;
}

static __always_inline int prefix_match(const __u8 *want, const __u8 *have, __u8 bits)
{
#pragma unroll
	for (int i = 0; i < 16; i++) {
		int left = (int)bits - 8 * i;
		if (left <= 0)
			break;
		__u8 mask = left >= 8 ? 0xff : (__u8)(0xff << (8 - left));
		if ((want[i] ^ have[i]) & mask)
			return 0;
	}
	return 1;
}

static __always_inline int reason_wanted(const struct skb_filter *f, __u32 reason)
{
	if (!(f->reasons[0] | f->reasons[1] | f->reasons[2] | f->reasons[3]))
		return 1;
	if (reason >= 256)
		return 0;
	/* no computed index: clang would drop the bound check the verifier needs */
	__u64 word = reason < 64 ? f->reasons[0] : reason < 128 ? f->reasons[1] : reason < 192 ? f->reasons[2]
									      : f->reasons[3];
	return (word >> (reason & 63)) & 1;
}

static __always_inline int where_wanted(const struct skb_filter *f, const struct where *w)
{
	if (f->netns && f->netns != w->netns)
		return 0;
	if (f->ifindex && f->ifindex != w->ifindex)
		return 0;
	if (f->has_ifname && !bytes_equal16((const __u8 *)f->ifname, (const __u8 *)w->ifname))
		return 0;
	return 1;
}

static __always_inline int flow_wanted(const struct skb_filter *f, const struct skb_flow *fl)
{
	if (f->l4proto && f->l4proto != fl->l4proto)
		return 0;
	if ((f->saddr_bits || f->daddr_bits) && !fl->family)
		return 0;
	if (f->saddr_bits && !prefix_match(f->saddr, fl->saddr, f->saddr_bits))
		return 0;
	if (f->daddr_bits && !prefix_match(f->daddr, fl->daddr, f->daddr_bits))
		return 0;
	/* a later fragment has no ports: it cannot match a port filter */
	if (f->sport_hi && (fl->fragment == FRAG_LATER || fl->sport < f->sport_lo || fl->sport > f->sport_hi))
		return 0;
	if (f->dport_hi && (fl->fragment == FRAG_LATER || fl->dport < f->dport_lo || fl->dport > f->dport_hi))
		return 0;
	return 1;
}

/* Process filters apply only where the process is the packet's (CTX_PROCESS). */
static __always_inline int process_wanted(const struct skb_filter *f, __u8 context, __u32 pid, __u64 cgroup_id,
					  const char *comm)
{
	if (!f->pid && !f->cgroup_id && !f->has_comm)
		return 1;
	if (context != CTX_PROCESS)
		return 0;
	if (f->pid && f->pid != pid)
		return 0;
	if (f->cgroup_id && f->cgroup_id != cgroup_id)
		return 0;
	if (f->has_comm && !bytes_equal16((const __u8 *)f->comm, (const __u8 *)comm))
		return 0;
	return 1;
}

#endif
