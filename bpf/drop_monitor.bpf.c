/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Counts every kfree_skb drop by (reason, location, namespace, interface) in a per-CPU hash, always
 * on: pinned with its raw tracepoint link under /sys/fs/bpf/ebpf_networking/drop_monitor/ so it
 * outlives the process that loaded it. User space reads the counts (module drop_monitor, the host
 * agent's metrics). Drops that find the table full are counted, not lost silently.
 */
#include "kernel_layout.h"
#include "drop_monitor.h"

BPF_PERCPU_HASH(drop_counts, struct drop_count_key, __u64, DROP_MONITOR_MAX_KEYS);
BPF_PERCPU_ARRAY(drop_monitor_meta, __u64, MON_SLOTS);

int drop_monitor_count(struct bpf_raw_tracepoint_args *ctx)
{
	struct drop_count_key key = {};
	struct where w = {};
	void *skb = (void *)ctx->args[0];
	key.location = ctx->args[1];
	key.reason = (__u32)ctx->args[2];
	where_of_skb(skb, 0, &w);
	key.netns = w.netns;
	key.ifindex = w.ifindex;
	__builtin_memcpy(key.ifname, w.ifname, sizeof(key.ifname));
	__u64 *count = drop_counts.lookup(&key);
	if (count) {
		*count += 1;
		return 0;
	}
	__u64 one = 1;
	if (drop_counts.update(&key, &one) != 0) {
		__u32 slot = MON_OVERFLOW;
		__u64 *overflow = drop_monitor_meta.lookup(&slot);
		if (overflow)
			*overflow += 1;
	}
	return 0;
}
