/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The continuous drop counter's key: shared by bpf/drop_monitor.bpf.c and
 * plugins/module_utils/drop_monitor.py.
 */
#ifndef EBPF_NETWORKING_DROP_MONITOR_H
#define EBPF_NETWORKING_DROP_MONITOR_H

#ifndef DROP_MONITOR_MAX_KEYS
#define DROP_MONITOR_MAX_KEYS 16384
#endif

struct drop_count_key {
	__u64 location;      /* kernel address that dropped (kfree_skb's caller) */
	__u32 reason;
	__u32 netns;         /* namespace inode, 0 unknown */
	__u32 ifindex;       /* 0: no device */
	char ifname[16];
	__u32 pad;
};

#define MON_OVERFLOW 0       /* drops not counted: the key table was full */
#define MON_SLOTS 1

#endif
