/* SPDX-License-Identifier: MIT */
/*
 * Time, durations, durable file writes and other small utilities.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "certherd/err.h"

#define CH_USEC_PER_SEC INT64_C(1000000)

/* Wall clock, seconds and microseconds since the epoch. */
int64_t ch_now(void);
int64_t ch_now_usec(void);
/* Monotonic clock in microseconds. */
int64_t ch_mono_usec(void);

/*
 * Parses "90d", "1h30m", "45s", "2w", "10y" or a plain number of seconds
 * into seconds. Returns 0 or -EINVAL.
 */
int ch_parse_duration(const char *s, int64_t *ret_sec);
/* Formats seconds as "2d3h", "5m10s", "now"... into buf. */
const char *ch_format_duration(int64_t sec, char *buf, size_t len);
/* Formats an epoch second as "2026-11-23T09:18:51Z" into buf. */
const char *ch_format_time(int64_t t, char *buf, size_t len);

/*
 * A URL as it may be shown: scheme, host and port only, with "/..." when
 * a path, query or user info followed (they often carry a token, as in a
 * heartbeat or webhook URL). Returns buf.
 */
const char *ch_url_redact(const char *url, char *buf, size_t len);

/* 64-bit FNV-1a hash, stable across runs (used for deterministic jitter). */
uint64_t ch_hash64(const char *s);

/* mkdir -p with the given mode for the directories it creates. */
int ch_mkdir_p(const char *path, mode_t mode);

/*
 * Creates the temporary file for an atomic replace of path, beside it
 * (mode 0600, O_EXCL, O_NOFOLLOW): "path.tmp.ch", or "path.tmp.XXXXXX"
 * when this process is already writing path.tmp.ch (the same path twice
 * in one batch). A path.tmp.ch last written before this process started
 * can only be what a killed predecessor left and is removed first, so
 * that writing the same file again after a crash leaves no temporary
 * file behind. Returns the descriptor with the name in *ret_tmp (caller
 * frees), or -errno.
 */
int ch_tmp_create_beside(const char *path, char **ret_tmp);

/*
 * Durable atomic replace of path with data: writes a temporary file
 * (ch_tmp_create_beside) in the same directory with the mode (and owner/group when not -1) set
 * before any byte is written, fsyncs it, renames it over path and fsyncs
 * the directory. On failure the temporary file is removed and path is
 * untouched. Refuses to replace a symlink. Returns 0 or -errno.
 */
int ch_write_file_atomic(const char *path, const void *data, size_t len,
			 mode_t mode, uid_t uid, gid_t gid, struct ch_err *reterr);

/* Reads a whole file (up to max bytes) into a NUL-terminated buffer. */
int ch_read_file(const char *path, size_t max, char **ret, size_t *ret_len);

/* Damerau-free Levenshtein distance, for "did you mean" suggestions. */
size_t ch_levenshtein(const char *a, const char *b);

/* Makes path absolute relative to base_dir (if relative). Caller frees. */
char *ch_path_join_abs(const char *base_dir, const char *path);

/* Returns a freshly allocated string, aborting on OOM (daemon/CLI use). */
char *ch_xstrdup(const char *s);
void *ch_xcalloc(size_t n, size_t size);
char *ch_xasprintf(const char *fmt, ...) _printf_(1, 2);

/* Random hex string of 2*n characters from the OS CSPRNG. */
int ch_random_hex(size_t n, char *buf, size_t buflen);
