/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Shared by bpf/sockops.bpf.c and bpf/sockredir.bpf.c; plugins/module_utils/sockmap_keys.py mirrors
 * the key layout.
 *
 * Byte order, the subtle part: in both struct bpf_sock_ops and struct sk_msg_md, local_port is in
 * host byte order, while remote_port is the 16-bit network-order port shifted into a __u32 (the
 * kernel does that shift on little-endian), i.e. bpf_ntohl(remote_port) is the port in host order.
 * Keys keep both ports in host order, so the two programs build the same key for the same socket.
 * Addresses are kept as IPv6, IPv4 ones mapped (::ffff:a.b.c.d), so an AF_INET socket and an
 * AF_INET6 dual-stack socket talking to it find each other.
 *
 * Why a key cannot name a socket of another namespace: the 4-tuple alone repeats across network
 * namespaces (two containers' loopbacks, two namespace pairs with the same addresses on their own
 * veths). So a key also holds both ends' initial sequence numbers as seen at ESTABLISHED (snd_nxt and
 * rcv_nxt then: the client's snd_nxt is the server's rcv_nxt and vice versa), which only the two ends
 * of one connection share, and for loopback addresses, whose two ends are always in one namespace,
 * that namespace's cookie too. Each socket keeps its peer's key in its socket storage
 * (struct sock_state), written by the sock_ops program, so the sk_msg program never rebuilds it.
 */
#ifndef EBPF_NETWORKING_SOCKMAP_H
#define EBPF_NETWORKING_SOCKMAP_H

#ifndef SOCKMAP_MAX_SOCKETS
#define SOCKMAP_MAX_SOCKETS 65535
#endif
#ifndef SOCKMAP_MAX_PORTS
#define SOCKMAP_MAX_PORTS 64
#endif
#ifndef SOCKMAP_MAX_CIDRS
#define SOCKMAP_MAX_CIDRS 64
#endif
/* errno values sock_hash_update returns (negated), for the failure counters */
#ifndef E2BIG
#define E2BIG 7
#endif
#ifndef ENOMEM
#define ENOMEM 12
#endif
#ifndef EBUSY
#define EBUSY 16
#endif
#ifndef EEXIST
#define EEXIST 17
#endif
#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

struct sock_key {
	__u32 local_ip[4];  /* network byte order words */
	__u32 remote_ip[4];
	__u32 local_port;   /* host byte order */
	__u32 remote_port;  /* host byte order */
	__u32 local_seq;    /* snd_nxt at ESTABLISHED: this end's initial sequence number + 1 */
	__u32 remote_seq;   /* rcv_nxt at ESTABLISHED: the peer's initial sequence number + 1 */
	__u64 netns;        /* netns cookie for loopback addresses, 0 for others */
};

/* Whether a socket's sending direction redirects. A direction decides at its first message and
 * only ever goes from UNDECIDED/REDIRECT to TCP: once a byte went through TCP, a later redirected
 * byte would overtake it (the receiver reads the redirected queue first). */
enum sock_direction {
	SOCK_DIR_UNDECIDED = 0,
	SOCK_DIR_REDIRECT,
	SOCK_DIR_TCP,
};

/* per-socket storage (sockmap_state) */
struct sock_state {
	struct sock_key peer;
	__u32 direction;
	__u32 reserved;
};

/* sockmap_config[0], written by user space */
struct sockmap_config {
	__u32 match_ports; /* 1: only sockets whose local or remote port is in sockmap_ports */
	__u32 match_cidrs; /* 1: only sockets whose remote address is in sockmap_cidrs */
	__u32 redirect;    /* 0: draining before removal, every message goes through TCP */
	__u32 reserved;
};

/* LPM trie key: prefix length over the mapped IPv6 address (so /8 of IPv4 is /104) */
struct cidr_key {
	__u32 prefixlen;
	__u32 addr[4];
};

/* sockmap_meta[0], written by user space: identity of the loaded set and where it is attached */
struct sockmap_meta {
	__u8 source_sha256[32];
	char cgroup[256];
};

/* plugins/module_utils/sockmap_keys.py COUNTERS names these in this order */
enum sockmap_counter {
	SOCKMAP_CNT_SOCKETS_ADDED = 0,
	SOCKMAP_CNT_SOCKETS_SKIPPED,     /* filters did not match */
	SOCKMAP_CNT_INSERT_FULL,         /* SOCKHASH full (E2BIG/ENOMEM) */
	SOCKMAP_CNT_INSERT_KEY_TAKEN,    /* EEXIST */
	SOCKMAP_CNT_INSERT_BUSY,         /* EBUSY: the socket already runs another deployment's sk_msg */
	SOCKMAP_CNT_INSERT_REFUSED,      /* any other error, e.g. EINVAL for a socket with an ULP */
	SOCKMAP_CNT_NO_STORAGE,          /* socket storage could not be created */
	SOCKMAP_CNT_MSGS_REDIRECTED,
	SOCKMAP_CNT_BYTES_REDIRECTED,
	SOCKMAP_CNT_MSGS_PASSED,         /* peer not in the map: not local, or not accelerated */
	SOCKMAP_CNT_MSGS_PASSED_TCP_DIR, /* the direction had already used TCP */
	SOCKMAP_CNT_MSGS_PASSED_DRAINING,
	SOCKMAP_CNT_MAX,
};

/* bcc's BPF_SOCKHASH, pinned at a path so the two programs (two bcc modules) share one map */
#define SOCKMAP_SOCKHASH_PINNED(_name, _key_type, _max_entries, _pinned) \
	struct _name##_table_t { \
		_key_type key; \
		int leaf; \
		int (*update)(_key_type *, int *); \
		int (*delete)(_key_type *); \
		int (*sock_hash_update)(void *, void *, u64); \
		int (*msg_redirect_hash)(void *, void *, u64); \
		int (*sk_redirect_hash)(void *, void *, u64); \
		u32 max_entries; \
	}; \
	__attribute__((section("maps/sockhash:" _pinned))) \
	struct _name##_table_t _name = { .max_entries = (_max_entries) }; \
	BPF_ANNOTATE_KV_PAIR(_name, _key_type, int)

/* Context fields must be read 4 bytes at a time; volatile stops clang merging two into one 8-byte load */
#define SOCKMAP_CTX_U32(field) (*(volatile __u32 *)&(field))

/* copy an IPv6 address out of the context, 4 bytes per load */
#define SOCKMAP_COPY_IP6(dst, ctx_words) \
	do { \
		(dst)[0] = SOCKMAP_CTX_U32((ctx_words)[0]); \
		(dst)[1] = SOCKMAP_CTX_U32((ctx_words)[1]); \
		(dst)[2] = SOCKMAP_CTX_U32((ctx_words)[2]); \
		(dst)[3] = SOCKMAP_CTX_U32((ctx_words)[3]); \
	} while (0)

static __always_inline int sockmap_is_loopback(const __u32 *ip)
{
	if (ip[0] || ip[1])
		return 0;
	if (ip[2] == 0)
		return ip[3] == bpf_htonl(1);                                 /* ::1 */
	return ip[2] == bpf_htonl(0x0000ffff) && (ip[3] & 0xff) == 127;    /* 127.0.0.0/8 */
}

static __always_inline void sockmap_set_ip4(__u32 *dst, __u32 ip4)
{
	dst[0] = 0;
	dst[1] = 0;
	dst[2] = bpf_htonl(0x0000ffff);
	dst[3] = ip4;
}

#endif
