/* SPDX-License-Identifier: MIT */
/*
 * Deterministic crash points for the crash-safety tests: when the
 * environment variable CERTHERD_CRASHPOINT names this point, the process
 * kills itself with SIGKILL right there, as a power cut would. Costs one
 * getenv() per call otherwise.
 */
#pragma once

void ch_crashpoint(const char *name);
