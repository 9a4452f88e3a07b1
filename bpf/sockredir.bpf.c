/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * sk_msg verdict program, attached to the SOCKHASH: a message sent on a socket in the map goes
 * straight to the receive queue of its peer socket when the peer is in the map too (both ends on
 * this host: only local sockets are ever in the map), skipping the TCP/IP stack. The peer's key
 * comes from the socket's storage, written by bpf/sockops.bpf.c. A direction redirects only while
 * every message before it was redirected (enum sock_direction), so bytes are never reordered.
 */
#include <linux/bpf.h>
#include "sockmap.h"

SOCKMAP_SOCKHASH_PINNED(sockmap_socks, struct sock_key, SOCKMAP_MAX_SOCKETS, SOCKMAP_PIN_DIR "/map_sockmap_socks");
BPF_TABLE_PINNED7("sk_storage", int, struct sock_state, sockmap_state, 0, SOCKMAP_PIN_DIR "/map_sockmap_state",
		  BPF_F_NO_PREALLOC);
BPF_TABLE_PINNED("array", __u32, struct sockmap_config, sockmap_config, 1, SOCKMAP_PIN_DIR "/map_sockmap_config");
BPF_TABLE_PINNED("percpu_array", __u32, __u64, sockmap_stats, SOCKMAP_CNT_MAX, SOCKMAP_PIN_DIR "/map_sockmap_stats");

static __always_inline void count(__u32 counter, __u64 amount)
{
	__u64 *value = sockmap_stats.lookup(&counter);
	if (value)
		*value += amount;
}

int ebn_sk_msg(struct sk_msg_md *msg)
{
	struct bpf_sock *sk = msg->sk;
	if (!sk)
		return SK_PASS;
	struct sock_state *state = sockmap_state.sk_storage_get(sk, 0, 0);
	if (!state) {
		count(SOCKMAP_CNT_MSGS_PASSED, 1);
		return SK_PASS;
	}
	if (state->direction == SOCK_DIR_TCP) {
		count(SOCKMAP_CNT_MSGS_PASSED_TCP_DIR, 1);
		return SK_PASS;
	}
	__u32 zero = 0;
	struct sockmap_config *cfg = sockmap_config.lookup(&zero);
	if (!cfg || !cfg->redirect) {
		state->direction = SOCK_DIR_TCP;
		count(SOCKMAP_CNT_MSGS_PASSED_DRAINING, 1);
		return SK_PASS;
	}
	struct sock_key peer = state->peer;
	__u64 size = msg->size;
	/* bcc rewrites this call into a statement of its own, so it cannot sit inside an if () */
	int verdict = sockmap_socks.msg_redirect_hash(msg, &peer, BPF_F_INGRESS);
	if (verdict == SK_PASS) {
		state->direction = SOCK_DIR_REDIRECT;
		count(SOCKMAP_CNT_MSGS_REDIRECTED, 1);
		count(SOCKMAP_CNT_BYTES_REDIRECTED, size);
	} else {
		state->direction = SOCK_DIR_TCP;
		count(SOCKMAP_CNT_MSGS_PASSED, 1);
	}
	return SK_PASS;
}
