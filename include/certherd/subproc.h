/* SPDX-License-Identifier: MIT */
/*
 * Commands run off the event loop: fork + exec in a process group of
 * their own, stdin and stdout on /dev/null, the tail of stderr kept for
 * the message, a timeout that kills the whole group. Used by the targets
 * that run hooks (exec) and configuration tests (nginx).
 */
#pragma once

#include <stdint.h>

struct event_base;

/*
 * r is 0 when the command exited 0, -EIO when it exited non-zero or was
 * killed, -ETIMEDOUT when the timeout killed it, or another -errno when
 * it could not be watched. message is "exited 0", "exited 3: <last
 * stderr lines joined by "; ">", "killed by signal 15", "timed out after
 * 30s: ..." (valid during the call only).
 */
typedef void ch_subproc_done_fn(int r, const char *message, void *arg);

/*
 * Starts argv (argv[0] looked up in PATH) with envp (NULL: the daemon's
 * environment) and a timeout in seconds. Returns 0 when started: done()
 * is then called exactly once, from the event loop, after the child has
 * been reaped and every event of the run freed. A negative return means
 * nothing was started and done() will not be called.
 */
int ch_subproc_run(struct event_base *base, char *const *argv, char *const *envp,
		   int64_t timeout_sec, ch_subproc_done_fn *done, void *arg);
