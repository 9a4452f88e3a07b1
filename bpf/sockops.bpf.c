/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * sock_ops program, attached to a cgroup v2 directory: puts every established TCP socket that
 * passes the port/CIDR filters into the SOCKHASH under its own key, and writes its peer's key into
 * the socket's storage (sockmap.h says why a key cannot name another namespace's socket).
 * bpf/sockredir.bpf.c then redirects messages between local sockets through that map.
 */
#include <linux/bpf.h>
#include "sockmap.h"

SOCKMAP_SOCKHASH_PINNED(sockmap_socks, struct sock_key, SOCKMAP_MAX_SOCKETS, SOCKMAP_PIN_DIR "/map_sockmap_socks");
BPF_TABLE_PINNED7("sk_storage", int, struct sock_state, sockmap_state, 0, SOCKMAP_PIN_DIR "/map_sockmap_state",
		  BPF_F_NO_PREALLOC);
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
	if (!cfg || !cfg->redirect)
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
	key.local_seq = skops->snd_nxt;
	key.remote_seq = skops->rcv_nxt;
	if (sockmap_is_loopback(key.remote_ip))
		key.netns = bpf_get_netns_cookie(skops);

	if (!wanted(&key)) {
		count(SOCKMAP_CNT_SOCKETS_SKIPPED, 1);
		return 1;
	}
	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return 1;
	struct sock_state *state = sockmap_state.sk_storage_get(sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!state) {
		count(SOCKMAP_CNT_NO_STORAGE, 1);
		return 1;
	}
	/* the key the peer stored itself under: its local end is our remote end */
	__builtin_memcpy(state->peer.local_ip, key.remote_ip, sizeof(key.remote_ip));
	__builtin_memcpy(state->peer.remote_ip, key.local_ip, sizeof(key.local_ip));
	state->peer.local_port = key.remote_port;
	state->peer.remote_port = key.local_port;
	state->peer.local_seq = key.remote_seq;
	state->peer.remote_seq = key.local_seq;
	state->peer.netns = key.netns;
	state->direction = SOCK_DIR_UNDECIDED;

	/* bcc rewrites this call into a statement of its own, so it cannot sit inside an if () */
	int rc = sockmap_socks.sock_hash_update(skops, &key, BPF_NOEXIST);
	if (rc == 0)
		count(SOCKMAP_CNT_SOCKETS_ADDED, 1);
	else if (rc == -E2BIG || rc == -ENOMEM)
		count(SOCKMAP_CNT_INSERT_FULL, 1);
	else if (rc == -EEXIST)
		count(SOCKMAP_CNT_INSERT_KEY_TAKEN, 1);
	else if (rc == -EBUSY)
		count(SOCKMAP_CNT_INSERT_BUSY, 1);
	else
		count(SOCKMAP_CNT_INSERT_REFUSED, 1);
	return 1;
}
