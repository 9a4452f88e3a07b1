/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Reports XDP programs' exceptions (XDP_ABORTED, invalid actions) and failed redirects with the
 * program's id and name and the interface, from the xdp_exception and xdp_redirect_err raw
 * tracepoints. A plain XDP_DROP fires no tracepoint in native mode: the XDP load balancer's own
 * counters report those (user space folds them in). User space fills xdp_filter before attaching.
 */
#include "kernel_layout.h"
#include "skb_flow.h"
#include "skb_filter.h"
#include "xdp_drop.h"

BPF_PERF_OUTPUT(xdp_events);
BPF_ARRAY(xdp_filter, struct skb_filter, 1);
BPF_PERCPU_ARRAY(xdp_counters, __u64, XCNT_SLOTS);

static __always_inline void xbump(__u32 index)
{
	__u64 *v = xdp_counters.lookup(&index);
	if (v)
		*v += 1;
}

static __always_inline int report(void *ctx, __u32 kind, void *dev, void *prog, __u32 action, __s32 err)
{
	__u32 zero = 0;
	struct skb_filter *f = xdp_filter.lookup(&zero);
	if (!f)
		return 0;
	xbump(XCNT_SEEN);
	struct xdp_drop_event ev = {};
	void *net = 0, *aux = 0;
	if (dev) {
		bpf_probe_read_kernel(&ev.where.ifindex, sizeof(ev.where.ifindex), (char *)dev + DEV_IFINDEX_OFF);
		bpf_probe_read_kernel(ev.where.ifname, sizeof(ev.where.ifname), (char *)dev + DEV_NAME_OFF);
		bpf_probe_read_kernel(&net, sizeof(net), (char *)dev + DEV_NET_OFF);
		ev.where.netns = net_inum(net);
		ev.where.if_source = IF_FROM_DEV;
	}
	if (!where_wanted(f, &ev.where))
		return 0;
	if (prog && bpf_probe_read_kernel(&aux, sizeof(aux), (char *)prog + PROG_AUX_OFF) == 0 && aux) {
		bpf_probe_read_kernel(&ev.prog_id, sizeof(ev.prog_id), (char *)aux + PROG_AUX_ID_OFF);
		bpf_probe_read_kernel(ev.prog_name, sizeof(ev.prog_name), (char *)aux + PROG_AUX_NAME_OFF);
	}
	ev.where.context = CTX_INTERRUPT; /* XDP runs in the driver's NAPI poll (or netif_receive for generic) */
	ev.ts_ns = bpf_ktime_get_ns();
	ev.kind = kind;
	ev.action = action;
	ev.err = err;
	if (xdp_events.perf_submit(ctx, &ev, sizeof(ev)) == 0)
		xbump(XCNT_SUBMITTED);
	else
		xbump(XCNT_SUBMIT_FAILED);
	return 0;
}

/* xdp_exception(const struct net_device *dev, const struct bpf_prog *xdp, u32 act) */
int xdp_on_exception(struct bpf_raw_tracepoint_args *ctx)
{
	return report(ctx, XDP_EV_EXCEPTION, (void *)ctx->args[0], (void *)ctx->args[1], (__u32)ctx->args[2], 0);
}

/* xdp_redirect_err(dev, xdp, tgt, int err, ...) */
int xdp_on_redirect_err(struct bpf_raw_tracepoint_args *ctx)
{
	return report(ctx, XDP_EV_REDIRECT_ERR, (void *)ctx->args[0], (void *)ctx->args[1], 4 /* XDP_REDIRECT */,
		      (__s32)ctx->args[3]);
}
