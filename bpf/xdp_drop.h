/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * XDP drops the kernel can see: an XDP program's exception (XDP_ABORTED or an invalid action) and a
 * failed redirect. Shared by bpf/xdp_drop.bpf.c and plugins/module_utils/xdp_drops.py. Needs
 * kernel_layout.h.
 */
#ifndef EBPF_NETWORKING_XDP_DROP_H
#define EBPF_NETWORKING_XDP_DROP_H

#define XDP_EV_EXCEPTION 1     /* xdp:xdp_exception */
#define XDP_EV_REDIRECT_ERR 2  /* xdp:xdp_redirect_err */

#define XCNT_SEEN 0
#define XCNT_SUBMITTED 1
#define XCNT_SUBMIT_FAILED 2
#define XCNT_SLOTS 3

struct xdp_drop_event {
	__u64 ts_ns;
	__u32 kind;          /* XDP_EV_* */
	__u32 prog_id;
	__u32 action;        /* xdp_exception: the action returned */
	__s32 err;           /* xdp_redirect_err: the error */
	char prog_name[16];
	struct where where;
};

#endif
