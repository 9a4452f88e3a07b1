/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * sock_ops program, attached to a cgroup v2 directory: puts every established TCP socket that
 * passes the port/CIDR filters into the SOCKHASH, keyed by its own 4-tuple (sockmap.h).
 * bpf/sockredir.bpf.c then redirects messages between local sockets through that map.
 */
#include <linux/bpf.h>
#include "sockmap.h"

SOCKMAP_SOCKHASH_PINNED(sockmap_socks, struct sock_key, SOCKMAP_MAX_SOCKETS, SOCKMAP_PIN_DIR "/map_sockmap_socks");
BPF_TABLE_PINNED("hash", __u32, __u8, sockmap_ports, SOCKMAP_MAX_PORTS, SOCKMAP_PIN_DIR "/map_sockmap_ports");
BPF_TABLE_PINNED7("lpm_trie", struct cidr_key, __u8, sockmap_cidrs, SOCKMAP_MAX_CIDRS, SOCKMAP_PIN_DIR "/map_sockmap_cidrs",
		  BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("array", __u32, struct sockmap_config, sockmap_config, 1, SOCKMAP_PIN_DIR "/map_sockmap_config");
BPF_TABLE_PINNED("percpu_array", __u32, __u64, sockmap_stats, SOCKMAP_CNT_MAX, SOCKMAP_PIN_DIR "/map_sockmap_stats");
BPF_TABLE_PINNED("array", __u32, struct sockmap_meta, sockmap_meta, 1, SOCKMAP_PIN_DIR "/map_sockmap_meta");

static __always_inline void count(__u32 counter, __u64 amount)
{
	__u64 *value = sockmap_stats.lookup(&counter);
	if (value)
		*value += amount;
}

static __always_inline int wanted(const struct sock_key *key)
{
	__u32 zero = 0;
	struct sockmap_config *cfg = sockmap_config.lookup(&zero);
	if (!cfg)
		return 0;
	if (cfg->match_ports) {
		__u32 lport = key->local_port, rport = key->remote_port;
		if (!sockmap_ports.lookup(&lport) && !sockmap_ports.lookup(&rport))
			return 0;
	}
	if (cfg->match_cidrs) {
		struct cidr_key ck = {};
		ck.prefixlen = 128;
		__builtin_memcpy(ck.addr, key->remote_ip, sizeof(ck.addr));
		if (!sockmap_cidrs.lookup(&ck))
			return 0;
	}
	return 1;
}

int ebn_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB && skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return 1;

	struct sock_key key = {};
	if (skops->family == AF_INET) {
		sockmap_set_ip4(key.local_ip, skops->local_ip4);
		sockmap_set_ip4(key.remote_ip, skops->remote_ip4);
	} else if (skops->family == AF_INET6) {
		SOCKMAP_COPY_IP6(key.local_ip, skops->local_ip6);
		SOCKMAP_COPY_IP6(key.remote_ip, skops->remote_ip6);
	} else {
		return 1;
	}
	key.local_port = skops->local_port;
	key.remote_port = bpf_ntohl(skops->remote_port);

	if (!wanted(&key)) {
		count(SOCKMAP_CNT_SOCKETS_SKIPPED, 1);
		return 1;
	}
	/* bcc rewrites this call into a statement of its own, so it cannot sit inside an if () */
	int rc = sockmap_socks.sock_hash_update(skops, &key, BPF_NOEXIST);
	if (rc == 0)
		count(SOCKMAP_CNT_SOCKETS_ADDED, 1);
	return 1;
}
