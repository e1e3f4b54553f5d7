// SPDX-License-Identifier: GPL-2.0
/* Hides by list_del only: see atsiv.h. */
#include "atsiv.h"
