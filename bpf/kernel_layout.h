/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Where a packet is and who runs: struct offsets of the RUNNING kernel (user space reads them from
 * /sys/kernel/btf/vmlinux and passes -D flags, plugins/module_utils/kernel_layout.py), because the
 * installed headers may belong to another kernel. The defaults below are 6.18's, for reading only.
 */
#ifndef EBPF_NETWORKING_KERNEL_LAYOUT_H
#define EBPF_NETWORKING_KERNEL_LAYOUT_H

#ifndef SKB_DEV_OFF
#define SKB_DEV_OFF 16
#endif
#ifndef SKB_SK_OFF
#define SKB_SK_OFF 24
#endif
#ifndef SKB_LEN_OFF
#define SKB_LEN_OFF 112
#endif
#ifndef SKB_PROTOCOL_OFF
#define SKB_PROTOCOL_OFF 176
#endif
#ifndef SKB_HEAD_OFF
#define SKB_HEAD_OFF 192
#endif
#ifndef SKB_NETWORK_HEADER_OFF
#define SKB_NETWORK_HEADER_OFF 180
#endif
#ifndef DEV_IFINDEX_OFF
#define DEV_IFINDEX_OFF 224
#endif
#ifndef DEV_NAME_OFF
#define DEV_NAME_OFF 280
#endif
#ifndef DEV_NET_OFF
#define DEV_NET_OFF 264
#endif
#ifndef NET_INUM_OFF
#define NET_INUM_OFF 176
#endif
#ifndef SK_NET_OFF
#define SK_NET_OFF 48
#endif
#ifndef SK_BOUND_DEV_IF_OFF
#define SK_BOUND_DEV_IF_OFF 20
#endif
#ifndef TASK_STACK_OFF
#define TASK_STACK_OFF 32
#endif
#ifndef TASK_FLAGS_OFF
#define TASK_FLAGS_OFF 44
#endif
#ifndef PROG_AUX_OFF
#define PROG_AUX_OFF 80
#endif
#ifndef PROG_AUX_ID_OFF
#define PROG_AUX_ID_OFF 32
#endif
#ifndef PROG_AUX_NAME_OFF
#define PROG_AUX_NAME_OFF 1016
#endif

/* Where the interface of a record came from. */
#define IF_NONE 0
#define IF_FROM_DEV 1     /* skb->dev */
#define IF_FROM_SOCKET 2  /* no device: the socket's bound device and namespace */

/* Who was running: only CTX_PROCESS makes pid/comm the packet's process. */
#define CTX_UNKNOWN 0
#define CTX_PROCESS 1     /* a user task's own kernel stack (a syscall: send, connect, ...) */
#define CTX_KTHREAD 2     /* a kernel thread (ksoftirqd, napi, kworker) */
#define CTX_INTERRUPT 3   /* softirq/hardirq on the per-CPU irq stack: current is whoever was interrupted */

#define PF_KTHREAD_FLAG 0x00200000
#define THREAD_STACK_SPAN 32768 /* THREAD_SIZE is 16 KiB on x86_64 (32 KiB with KASAN) */

struct where {
	__u32 netns;         /* network namespace inode, 0 unknown */
	__u32 ifindex;
	char ifname[16];
	__u8 if_source;      /* IF_* */
	__u8 context;        /* CTX_* */
	__u8 has_socket;     /* the skb belongs to (or was dropped at) a socket */
	__u8 pad;
};

static __always_inline __u32 net_inum(void *net)
{
	__u32 inum = 0;
	if (net)
		bpf_probe_read_kernel(&inum, sizeof(inum), (char *)net + NET_INUM_OFF);
	return inum;
}

/* Device of the skb, else the socket's namespace and bound device (local output before routing). */
static __always_inline void where_of_skb(void *skb, void *sk, struct where *w)
{
	void *dev = 0, *net = 0;
	bpf_probe_read_kernel(&dev, sizeof(dev), (char *)skb + SKB_DEV_OFF);
	if (!sk)
		bpf_probe_read_kernel(&sk, sizeof(sk), (char *)skb + SKB_SK_OFF);
	w->has_socket = sk != 0;
	if (dev) {
		bpf_probe_read_kernel(&w->ifindex, sizeof(w->ifindex), (char *)dev + DEV_IFINDEX_OFF);
		bpf_probe_read_kernel(w->ifname, sizeof(w->ifname), (char *)dev + DEV_NAME_OFF);
		bpf_probe_read_kernel(&net, sizeof(net), (char *)dev + DEV_NET_OFF);
		w->netns = net_inum(net);
		w->if_source = IF_FROM_DEV;
	} else if (sk) {
		bpf_probe_read_kernel(&net, sizeof(net), (char *)sk + SK_NET_OFF);
		bpf_probe_read_kernel(&w->ifindex, sizeof(w->ifindex), (char *)sk + SK_BOUND_DEV_IF_OFF);
		w->netns = net_inum(net);
		w->if_source = IF_FROM_SOCKET;
	}
}

/*
 * Process, kernel thread or interrupt. Softirqs (where receive and forward drops happen) run on the
 * per-CPU irq stack on x86_64, so an address on the current kernel stack lies outside current's task
 * stack. The BPF frame itself may be on a per-CPU private stack (6.13+), so the caller passes the raw
 * tracepoint's ctx: the args array the kernel built on its own stack. The address goes through a map
 * slot because the verifier tracks it as a pointer.
 */
static __always_inline __u8 running_context(volatile __u64 *slot, void *on_kernel_stack)
{
	void *task = (void *)bpf_get_current_task();
	__u64 stack = 0;
	__u32 flags = 0;
	*slot = (__u64)on_kernel_stack;
	__u64 sp = *slot;
	if (bpf_probe_read_kernel(&stack, sizeof(stack), (char *)task + TASK_STACK_OFF) || !stack)
		return CTX_UNKNOWN;
	bpf_probe_read_kernel(&flags, sizeof(flags), (char *)task + TASK_FLAGS_OFF);
	if (sp - stack >= THREAD_STACK_SPAN)
		return CTX_INTERRUPT;
	return (flags & PF_KTHREAD_FLAG) ? CTX_KTHREAD : CTX_PROCESS;
}

#endif
