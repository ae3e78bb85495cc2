/* SPDX-License-Identifier: MIT */
/*
 * Durable atomic file replacement in batches. Files are staged as
 * temporary files beside their destinations (mode and owner set before
 * the first byte); one commit then makes the whole batch durable (an
 * fsync per file when few, one syncfs per filesystem when many), renames
 * every file into place and fsyncs each directory once. That is the
 * write-temp / fsync / rename / fsync-directory sequence, with the sync
 * cost shared by everything staged in one turn of the event loop.
 *
 * Files are staged in groups (one deployment, one issuance); a group
 * succeeds or fails as a whole and learns its outcome through its
 * callback, which runs inside ch_filebatch_commit().
 *
 * An asynchronous batch (the daemon's) does the file system work on a
 * thread of its own: staging only copies the data, and a commit hands
 * everything staged to the worker and returns at once. The worker
 * creates, writes, syncs and renames; the callbacks then run on the
 * event loop, in staging order, so whatever they record or start comes
 * after the files are durable. Commits made while the worker is busy
 * are done together in its next pass.
 */
#pragma once

#include <stddef.h>
#include <sys/types.h>

#include "certherd/err.h"

struct event_base;
struct ch_filebatch;

/* r is 0 or -errno; message says what failed (or NULL on success). */
typedef void ch_filebatch_done_fn(int r, const char *message, void *arg);

struct ch_filebatch *ch_filebatch_new(void);
/* An asynchronous batch whose worker reports on base's loop; NULL when it cannot start. */
struct ch_filebatch *ch_filebatch_new_async(struct event_base *base);
/*
 * Removes anything still staged; callbacks of uncommitted groups are not
 * called. An asynchronous batch first completes what was committed, and
 * runs its callbacks (as ch_filebatch_drain()).
 */
struct ch_filebatch *ch_filebatch_free(struct ch_filebatch *b);

/*
 * Stages data for path in the current group. Refuses a symlink or
 * non-regular file at path. On failure the caller must end the group with
 * ch_filebatch_group_abort(). what names the file in messages ("key").
 * An asynchronous batch only copies data here (and fails only when out of
 * memory): what the file system refuses reaches the group's callback.
 */
int ch_filebatch_stage(struct ch_filebatch *b, const char *path, const void *data, size_t len,
		       mode_t mode, uid_t uid, gid_t gid, const char *what, struct ch_err *reterr);
/*
 * Stages a directory (mkdir -p, mode for each directory created) in the
 * current group, for the files staged after it. Its entry is durable
 * with the group's files.
 */
int ch_filebatch_mkdir(struct ch_filebatch *b, const char *path, mode_t mode,
		       struct ch_err *reterr);
/* Ends the current group; done (may be NULL) is called from the commit. */
void ch_filebatch_group_end(struct ch_filebatch *b, ch_filebatch_done_fn *done, void *arg);
/* Ends the current group by removing its staged files. */
void ch_filebatch_group_abort(struct ch_filebatch *b);
/* Number of groups waiting for a commit. */
size_t ch_filebatch_pending(const struct ch_filebatch *b);
/*
 * Makes every ended group durable and visible and calls its callback;
 * the files of a group still being staged wait for the next commit. A
 * group whose data could not be synced keeps all its old files; a rename
 * failing half way through a group leaves the files before it replaced.
 * Returns the number of groups that failed (an asynchronous batch: 0, the
 * callbacks run later).
 */
int ch_filebatch_commit(struct ch_filebatch *b);
/*
 * Asynchronous batch: when the worker began the file system call it is in
 * (ch_mono_usec(), 0 when it is idle), and what it is doing ("writing
 * PATH"); queued: groups in its current pass and waiting for the next.
 */
int64_t ch_filebatch_worker_step(struct ch_filebatch *b, char *at, size_t len,
				 size_t *queued);
/*
 * Asynchronous batch: waits for every commit handed to the worker and
 * runs its callbacks now. Returns the number of commits completed.
 */
size_t ch_filebatch_drain(struct ch_filebatch *b);
