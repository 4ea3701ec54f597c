// SPDX-License-Identifier: GPL-2.0-only
/* Minimal module for the failing-build test of the DKMS packaging. */
#include <linux/module.h>
#include <linux/moduleparam.h>

static ushort port = 5555;
module_param(port, ushort, 0444);
MODULE_PARM_DESC(port, "UDP port to serve (default 5555)");

static int __init kecho_stub_init(void)
{
	return 0;
}

static void __exit kecho_stub_exit(void)
{
}

module_init(kecho_stub_init);
module_exit(kecho_stub_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kecho packaging test module");
MODULE_VERSION(KECHO_VERSION);
