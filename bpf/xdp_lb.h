/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Structures shared by bpf/xdp_proxy.bpf.c and user space (plugins/module_utils/xdp_lb_maps.py
 * packs the same layouts with struct). Change both together; the module stores a hash of the
 * source in lb_meta and reloads the program when it differs. Changing lb_flow_key, lb_flow or the
 * lb_snat_ports indexing needs LB_LAYOUT_VERSION bumped (here and in xdp_lb_maps.py): a reload
 * keeps the pinned flow tables only when the layout is the same.
 */
#ifndef EBPF_NETWORKING_XDP_LB_H
#define EBPF_NETWORKING_XDP_LB_H

#define LB_LAYOUT_VERSION 2

/* Sizes come from the module as -D flags; these defaults keep the file compilable alone. */
#ifndef LB_MAX_SERVICES
#define LB_MAX_SERVICES 16
#endif
#ifndef LB_MAX_BACKENDS
#define LB_MAX_BACKENDS 64 /* per service */
#endif
#ifndef LB_RING_SIZE
#define LB_RING_SIZE 4099 /* Maglev table size per service, a prime well above LB_MAX_BACKENDS */
#endif
#ifndef LB_MAX_FLOWS
#define LB_MAX_FLOWS 65536 /* connections: one lb_conntrack entry each */
#endif
#ifndef LB_MAX_SNAT_IPS
#define LB_MAX_SNAT_IPS 4 /* SNAT addresses of all services together */
#endif
#ifndef LB_SNAT_PORT_MIN
#define LB_SNAT_PORT_MIN 20000
#endif
#ifndef LB_SNAT_PORT_MAX
#define LB_SNAT_PORT_MAX 29999
#endif
#define LB_SNAT_PORTS (LB_SNAT_PORT_MAX - LB_SNAT_PORT_MIN + 1)
#define LB_SVC_SNAT_MAX 4 /* SNAT addresses per service (a power of two: indexes are masked) */

/* Flow clock: jiffies (bpf_jiffies64 is inlined by the verifier on x86-64, about 0 ns; both
 * bpf_ktime_get_ns and bpf_ktime_get_coarse_ns cost ~40 ns a call in this VM). User space measures
 * the kernel's HZ and passes it with the timeouts (seconds) as -D flags; defaults as Cilium's. */
#ifndef LB_HZ
#define LB_HZ 250
#endif
#ifndef LB_TO_TCP_SYN
#define LB_TO_TCP_SYN (60 * LB_HZ)
#endif
#ifndef LB_TO_TCP_EST
#define LB_TO_TCP_EST (21600 * LB_HZ)
#endif
#ifndef LB_TO_TCP_CLOSING
#define LB_TO_TCP_CLOSING (10 * LB_HZ)
#endif
#ifndef LB_TO_UDP
#define LB_TO_UDP (60 * LB_HZ)
#endif
/* A SNAT port whose TCP flow ended is passed over for this long while a rested port is found: the
 * backend may still hold the old connection in TIME_WAIT (60 s on Linux) and reject the new SYN (0: off). */
#ifndef LB_TO_TCP_TIME_WAIT
#define LB_TO_TCP_TIME_WAIT (60 * LB_HZ)
#endif
#define LB_TOUCH LB_HZ /* refresh last_seen at most once a second: timeouts need no finer time */

/* All addresses and ports in network byte order. */
struct lb_service_key {
	__be32 vip;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct lb_snat_addr {
	__be32 ip;
	__u32 index; /* row in lb_snat_ports */
};

/* How a service's packets reach the backend (lb_service.forwarding, lb_flow.forwarding). */
#define LB_FWD_NAT 0  /* full NAT: addresses and ports rewritten, replies come back through us */
#define LB_FWD_DSR 1  /* direct server return: destination MAC only; the backend holds the VIP */
#define LB_FWD_IPIP 2 /* IPIP to the backend (lb_encap.h); the backend decapsulates, holds the VIP */

struct lb_service {
	__u32 index;         /* row in lb_backends / lb_maglev / lb_svc_stats */
	__u32 ring_gen;      /* which of the two Maglev tables is live (0 or 1) */
	__u32 backend_count; /* backends in the live Maglev table (weight > 0); 0 = refuse new flows */
	__u16 snat_count;    /* used entries of snat[] (nat only) */
	__u8 forwarding;     /* LB_FWD_*; was the high bytes of a u32 snat_count, so old rows read as nat */
	__u8 pad;
	/* nat: the SNAT addresses. ipip: snat[0].ip is the outer source address (snat_count 0). */
	struct lb_snat_addr snat[LB_SVC_SNAT_MAX];
};

/* lb_addrs: every VIP and SNAT address, so other traffic costs one lookup. */
#define LB_ADDR_VIP 1
#define LB_ADDR_SNAT 2
struct lb_addr {
	__u32 flags;
	__u32 snat_index; /* with LB_ADDR_SNAT: row in lb_snat_ports */
};

/* lb_addr_cache: lb_addrs again as a direct-mapped array, the filter every packet passes first. An
 * array lookup is inlined by the verifier; a hash-map lookup (hashing the key, walking a bucket) cost
 * the established and reply paths about as much as the rest of their work. The slot is a Fibonacci
 * hash of the address; user space derives every slot from lb_addrs (xdp_lb_maps.addr_cache_slots).
 * A slot two of our addresses share holds LB_ADDR_SHARED: packets to it ask lb_addrs. 8 bytes, read
 * and written as one word, so a packet never sees half of an update. */
#define LB_ADDR_CACHE_BITS 10
#define LB_ADDR_CACHE_SLOTS (1 << LB_ADDR_CACHE_BITS)
#define LB_ADDR_SHARED 4
struct lb_addr_slot {
	__be32 ip;
	__u16 flags;      /* LB_ADDR_*; 0 = no address of ours hashes here */
	__u16 snat_index;
};

union lb_addr_word {
	struct lb_addr_slot slot;
	__u64 word;
};

static __always_inline __u32 lb_addr_cache_index(__be32 ip)
{
	return ((__u32)ip * 0x9E3779B1u) >> (32 - LB_ADDR_CACHE_BITS);
}

struct lb_backend {
	__be32 ip;
	__be16 port;
	__u8 mac[6];  /* fallback when the FIB has no neighbour entry */
	__u8 active;  /* 1 while configured, also when draining (weight 0) */
	__u8 mac_valid;
	__u16 weight; /* 0 = draining: no new flows, existing ones continue */
};

/* lb_nexthops[backend index * LB_MAX_SNAT_IPS + SNAT index], per CPU: the FIB's answer for the way
 * to a backend, reused by new flows for up to LB_NEXTHOP_TTL (bpf/lb_nexthop.h). The lookup's inputs
 * are kept with it: an answer is reused only for the same question. */
struct lb_nexthop {
	__be32 backend_ip;
	__be32 src_ip;
	__u32 in_ifindex;
	__u32 out_ifindex;
	__u32 stamp;  /* jiffies (low 32 bits) of the lookup */
	__u8 proto;   /* the lookup's l4_protocol */
	__u8 direct;  /* no gateway: the backend itself is the next hop (dsr needs that) */
	__u8 smac[6];
	__u8 dmac[6];
	__u8 pad[2];
};

#ifndef LB_NEXTHOP_TTL
#define LB_NEXTHOP_TTL LB_HZ /* a route or neighbour change reaches new flows within a second */
#endif

/* lb_conntrack key: the client's packet as it arrives (client -> VIP). */
struct lb_flow_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* lb_flow.state bits */
#define LB_ST_REPLIED 1   /* the backend answered: established */
#define LB_ST_FIN_FWD 2   /* client sent FIN */
#define LB_ST_FIN_REPLY 4 /* backend sent FIN */
#define LB_ST_RST 8

/* One entry per connection serves both directions: a reply finds it through lb_snat_ports, so the
 * two directions cannot come apart. 56 bytes; with the 16-byte key and the LRU's 48-byte element
 * header, 120 bytes of map memory per connection. */
struct lb_flow {
	__be32 backend_ip;
	__be32 snat_ip;
	__be16 backend_port;
	__be16 snat_port;
	__u16 svc_index;
	__u16 backend_slot;
	__u32 client_ifindex;  /* client packets arrive here; replies leave here */
	__u32 backend_ifindex; /* towards the backend */
	__u8 client_mac[6];    /* the client's next hop: replies go to it */
	__u8 client_lb_mac[6]; /* our address on the client side */
	__u8 backend_mac[6];
	__u8 backend_lb_mac[6];
	__u32 last_seen;       /* jiffies (low 32 bits), refreshed at most every LB_TOUCH */
	__u16 snat_index;      /* row in lb_snat_ports */
	__u8 state;            /* LB_ST_* */
	__u8 forwarding;       /* LB_FWD_* (was padding: 0, nat). dsr/ipip flows hold no SNAT port; for ipip
				* snat_ip is the outer source address */
};

/* lb_snat_ports[snat_index * LB_SNAT_PORTS + port - LB_SNAT_PORT_MIN]: the flow holding that port
 * (key.proto 0 = never used) and when that flow's port becomes free unless it sees another packet
 * (jiffies; refreshed with the flow's last_seen, "now" once it is closed), so the scan for a
 * free port reads this array only. The flow entry has the last word when it exists. */
struct lb_snat_slot {
	struct lb_flow_key key;
	__u64 free_at; /* jiffies */
};

struct lb_counters {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
	__u64 reply_packets;
	__u64 reply_bytes;
	__u64 drops;
	__u64 refused; /* new flows refused: every SNAT port held by a live flow */
};

/* Global drop/pass reasons, index into lb_global. */
enum lb_global_counter {
	LB_CNT_PASSED = 0,         /* for a VIP but no service: to the stack */
	LB_CNT_NO_BACKEND,
	LB_CNT_NO_NEIGH,
	LB_CNT_SNAT_EXHAUSTED,
	LB_CNT_FLOW_INSERT_FAIL,
	LB_CNT_FRAGMENT,           /* fragments to a VIP or SNAT address: dropped */
	LB_CNT_ORPHAN_REPLY,       /* to a SNAT port without a live flow: dropped, the stack would RST */
	LB_CNT_TTL_EXPIRED,        /* TTL <= 1: to the stack, which answers time exceeded */
	LB_CNT_PORT_RECLAIMED,     /* a new flow took the port of an expired or closed one */
	LB_CNT_PORT_SCAN,          /* probes found nothing: the full scan of the range ran */
	LB_CNT_FLOW_LOST,          /* a flow's port was taken meanwhile: its packet dropped */
	LB_CNT_UDP_REPICK,         /* a UDP flow moved off a removed backend */
	LB_CNT_ICMP_TRANSLATED,
	LB_CNT_ENCAP_TOO_BIG,      /* ipip: the packet plus the outer header exceeds the egress MTU: dropped */
	LB_CNT_DSR_NOT_NEIGHBOUR,  /* dsr: the route to the backend has a gateway, MAC rewrite cannot reach it */
	LB_CNT_ICMP_TOO_BIG,       /* ipip: a DF packet too big for the tunnel answered with ICMP frag needed */
	LB_CNT_ENCAP_AGGREGATE,    /* ipip: a GRO/GSO aggregate (longer than the ingress MTU) cannot be tunnelled */
	LB_CNT_NEXTHOP_LOOKUP,     /* a new flow asked the kernel FIB (no answer for its backend from the last second) */
	LB_CNT_PORT_RESTED,        /* its own port was held, or its TCP flow ended within tcp_time_wait: a rested one was taken */
	LB_CNT_PORT_NOT_RESTED,    /* ... no rested one among the ports tried: it took another (own if free, or the scan's) */
	LB_CNT_MAX,
};

/* lb_meta[0]: identity of the loaded program, written by user space only. */
struct lb_meta {
	__u8 source_sha256[32];
	__u32 max_services;
	__u32 max_backends;
	__u32 ring_size;
	__u32 max_flows;
	__u16 snat_port_min;
	__u16 snat_port_max;
	__u32 ifindex;
	__u32 peer_ifindex;   /* host-side veth peer given an XDP_PASS program (native mode) */
	__u64 netns_ino;
	__u8 mode;            /* 1 native, 2 generic */
	__u8 pad[3];
	__u32 to_tcp_time_wait; /* seconds; 0 in pins of versions without it (they had no such wait) */
	char ifname[16];
	char netns[96];       /* as the user named it: container:NAME, netns:NAME or a path */
	__u32 layout_version;
	__u32 max_snat_ips;
	__u32 timeouts[4];    /* seconds: tcp syn, established, closing, udp */
};

#endif
