// SPDX-License-Identifier: GPL-2.0
/*
 * The Atsiv scenario for Linux, for Vigil's real-host tests: a signed
 * module that, once loaded, hides itself from the kernel's lists of
 * modules. Each variant is one .c file that defines its hiding and
 * includes this body.
 *
 *   atsiv_list.c  list_del of its entry in the modules list: gone from
 *                 /proc/modules and (on 6.1) /proc/kallsyms; its sysfs
 *                 directory stays.
 *   atsiv_kobj.c  list_del plus kobject_del of its sysfs kobject: gone
 *                 from /proc/modules, /sys/module and /proc/kallsyms.
 *
 * It does nothing else. It has no exit function, so it cannot be
 * unloaded (the guest is powered off after the test).
 */
#include <linux/module.h>
#include <linux/kobject.h>
#include <linux/list.h>

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Vigil test: a module that hides itself");

/*
 * The payload stays in the module's core text after init, as a rootkit's
 * code does: ftrace lists it in available_filter_functions.
 */
static noinline int atsiv_payload(int x)
{
	return x * 7 + 1;
}

static int __init atsiv_init(void)
{
	pr_info("%s: loaded, hiding (%d)\n", KBUILD_MODNAME, atsiv_payload(1));
	list_del(&THIS_MODULE->list);
#ifdef ATSIV_KOBJECT
	kobject_del(&THIS_MODULE->mkobj.kobj);
#endif
	return 0;
}
module_init(atsiv_init);
