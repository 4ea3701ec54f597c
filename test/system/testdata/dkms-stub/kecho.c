// SPDX-License-Identifier: GPL-2.0-only
/* Test stand-in for kecho: loads, has the parameters, serves nothing. */
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
MODULE_DESCRIPTION("kecho test stand-in");
MODULE_VERSION(KECHO_VERSION);
