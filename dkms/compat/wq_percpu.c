// SPDX-License-Identifier: GPL-2.0
/*
 * HAVE_WQ_PERCPU: workqueues have an explicit per-CPU flag (6.17, and
 * backported to some stable kernels). It is an enum constant, not a
 * macro, so only a compile test can see it.
 */
#include <linux/workqueue.h>

static inline unsigned int kecho_probe(void)
{
	return WQ_PERCPU;
}
