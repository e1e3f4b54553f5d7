// SPDX-License-Identifier: GPL-2.0
/*
 * A module that does nothing but say it loaded, for Vigil's real-host
 * tests: each crafted case of TestKernelOracle is a copy of it under its
 * own name (NAME.c), signed one way or another, and handed to the kernel.
 */
#include <linux/module.h>

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Vigil test: the kernel as the oracle");

static int __init probe_init(void)
{
	pr_info("%s: loaded\n", KBUILD_MODNAME);
	return 0;
}
module_init(probe_init);
