/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * sk_msg verdict program, attached to the SOCKHASH: a message sent on a socket in the map goes
 * straight to the receive queue of its peer socket when the peer is in the map too (both ends
 * local), skipping the TCP/IP stack. Messages whose peer is not in the map pass as usual.
 */
#include <linux/bpf.h>
#include "sockmap.h"

SOCKMAP_SOCKHASH_PINNED(sockmap_socks, struct sock_key, SOCKMAP_MAX_SOCKETS, SOCKMAP_PIN_DIR "/map_sockmap_socks");
BPF_TABLE_PINNED("percpu_array", __u32, __u64, sockmap_stats, SOCKMAP_CNT_MAX, SOCKMAP_PIN_DIR "/map_sockmap_stats");

static __always_inline void count(__u32 counter, __u64 amount)
{
	__u64 *value = sockmap_stats.lookup(&counter);
	if (value)
		*value += amount;
}

int ebn_sk_msg(struct sk_msg_md *msg)
{
	/* the peer's key: its local end is our remote end */
	struct sock_key peer = {};
	if (msg->family == AF_INET) {
		sockmap_set_ip4(peer.local_ip, msg->remote_ip4);
		sockmap_set_ip4(peer.remote_ip, msg->local_ip4);
	} else if (msg->family == AF_INET6) {
		SOCKMAP_COPY_IP6(peer.local_ip, msg->remote_ip6);
		SOCKMAP_COPY_IP6(peer.remote_ip, msg->local_ip6);
	} else {
		return SK_PASS;
	}
	peer.local_port = bpf_ntohl(msg->remote_port);
	peer.remote_port = msg->local_port;

	__u64 size = msg->size;
	/* bcc rewrites this call into a statement of its own, so it cannot sit inside an if () */
	int verdict = sockmap_socks.msg_redirect_hash(msg, &peer, BPF_F_INGRESS);
	if (verdict == SK_PASS) {
		count(SOCKMAP_CNT_MSGS_REDIRECTED, 1);
		count(SOCKMAP_CNT_BYTES_REDIRECTED, size);
	} else {
		count(SOCKMAP_CNT_MSGS_PASSED, 1);
	}
	return SK_PASS;
}
