// SPDX-License-Identifier: GPL-2.0
/* Hides by list_del and kobject_del: see atsiv.h. */
#define ATSIV_KOBJECT
#include "atsiv.h"
