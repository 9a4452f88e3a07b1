/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Shared by bpf/skb_drop.bpf.c and user space (plugins/module_utils/drop_trace.py packs and
 * unpacks the same layouts). Addresses are 16 bytes, IPv4 mapped as ::ffff:a.b.c.d; ports in
 * host byte order.
 */
#ifndef EBPF_NETWORKING_SKB_DROP_H
#define EBPF_NETWORKING_SKB_DROP_H

/* struct sk_buff offsets of the running kernel, read from its BTF by user space: the installed
 * headers may belong to another kernel. */
#ifndef SKB_HEAD_OFF
#define SKB_HEAD_OFF 192
#endif
#ifndef SKB_NETWORK_HEADER_OFF
#define SKB_NETWORK_HEADER_OFF 180
#endif
#ifndef DROP_MAX_STACKS
#define DROP_MAX_STACKS 1024
#endif

struct drop_filter {
	__u64 cgroup_id;     /* 0: any */
	__u64 reasons[4];    /* bitmask of drop reasons below 256; all zero: any */
	__u32 pid;           /* process (tgid); 0: any */
	__u16 sport;         /* 0: any */
	__u16 dport;         /* 0: any */
	__u8 l4proto;        /* 0: any */
	__u8 has_saddr;
	__u8 has_daddr;
	__u8 has_comm;
	char comm[16];
	__u8 saddr[16];
	__u8 daddr[16];
};

struct drop_event {
	__u64 ts_ns;
	__u64 location;
	__u64 cgroup_id;
	__u32 pid;
	__u32 tid;
	__u32 reason;
	__s32 stack_id;
	__u16 protocol;      /* ethertype, host order */
	__u16 sport;
	__u16 dport;
	__u8 l4proto;
	__u8 family;         /* 4, 6, or 0 when the packet was not parsed */
	__u8 saddr[16];
	__u8 daddr[16];
	char comm[16];
};

#endif
