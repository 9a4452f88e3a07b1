/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Structures shared by bpf/xdp_proxy.bpf.c and user space (plugins/module_utils/xdp_lb_maps.py
 * packs the same layouts with struct). Change both together; the module stores a hash of the
 * source in lb_meta and reloads the program when it differs.
 */
#ifndef EBPF_NETWORKING_XDP_LB_H
#define EBPF_NETWORKING_XDP_LB_H

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
#define LB_MAX_FLOWS 65536 /* connection-table entries (two per connection) */
#endif
#ifndef LB_SNAT_PORT_MIN
#define LB_SNAT_PORT_MIN 20000
#endif
#ifndef LB_SNAT_PORT_MAX
#define LB_SNAT_PORT_MAX 29999
#endif
#define LB_SNAT_TRIES 8

/* All addresses and ports in network byte order. */
struct lb_service_key {
	__be32 vip;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct lb_service {
	__u32 index;         /* row in lb_backends / lb_maglev / lb_service_stats */
	__u32 ring_gen;      /* which of the two Maglev tables is live (0 or 1) */
	__u32 backend_count; /* active backends; 0 = drop new flows */
	__be32 snat_ip;      /* source address towards the backends */
};

struct lb_backend {
	__be32 ip;
	__be16 port;
	__u8 mac[6];  /* fallback when the FIB has no neighbour entry */
	__u8 active;
	__u8 mac_valid;
	__u16 weight;
};

struct lb_flow_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* What to rewrite a packet of a known flow into, and where to send it. */
struct lb_nat {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 smac[6];
	__u8 dmac[6];
	__u32 ifindex;     /* egress device: XDP_TX when it is the ingress device */
	__u16 svc_index;
	__u16 backend_slot;
	__u8 reply;        /* 1 = backend -> client direction */
	__u8 pad[3];
};

struct lb_counters {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
	__u64 reply_packets;
	__u64 reply_bytes;
	__u64 drops;
};

/* Global drop/pass reasons, index into lb_global_stats. */
enum lb_global_counter {
	LB_CNT_PASSED = 0,
	LB_CNT_NO_BACKEND,
	LB_CNT_NO_NEIGH,
	LB_CNT_SNAT_EXHAUSTED,
	LB_CNT_FLOW_INSERT_FAIL,
	LB_CNT_FRAGMENT,
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
	__u8 pad[7];
	char ifname[16];
	char netns[96];       /* as the user named it: container:NAME, netns:NAME or a path */
};

#endif
