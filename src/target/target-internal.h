/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the target kinds in src/target/: the certificate
 * files a target writes (file, nginx), signalling a service through its
 * pidfile (reload, nginx) and reporting a result on the next loop turn.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "certherd/err.h"
#include "certherd/target.h"

/* The file options of a target kind; embed it and list CH_TARGET_FILES_KEYS. */
struct ch_target_files {
	char *cert;
	char *chain;
	char *fullchain;
	char *key;
	char *combined;
	char *owner;
	char *group;
	int mode;     /* -1: 0644 */
	int key_mode; /* -1: 0600 */
};

#define CH_TARGET_FILES_KEYS(type, m)                                                      \
	{ "cert", CH_CONF_PATH, offsetof(type, m.cert), false,                              \
	  "a file path for the leaf certificate, may contain {name}" },                     \
	{ "chain", CH_CONF_PATH, offsetof(type, m.chain), false,                            \
	  "a file path for the intermediate certificates, may contain {name}" },            \
	{ "fullchain", CH_CONF_PATH, offsetof(type, m.fullchain), false,                    \
	  "a file path for leaf + intermediates, may contain {name}" },                     \
	{ "key", CH_CONF_PATH, offsetof(type, m.key), false,                                \
	  "a file path for the private key, may contain {name}" },                          \
	{ "combined", CH_CONF_PATH, offsetof(type, m.combined), false,                      \
	  "a file path for key + leaf + intermediates, may contain {name}" },               \
	{ "owner", CH_CONF_STRING, offsetof(type, m.owner), false,                          \
	  "a user name or numeric uid" },                                                   \
	{ "group", CH_CONF_STRING, offsetof(type, m.group), false,                          \
	  "a group name or numeric gid" },                                                  \
	{ "mode", CH_CONF_MODE, offsetof(type, m.mode), false,                              \
	  "an octal file mode such as \"0644\"" },                                          \
	{ "key_mode", CH_CONF_MODE, offsetof(type, m.key_mode), false,                      \
	  "an octal file mode such as \"0600\" or \"0640\"" }

#define CH_TARGET_FILES_MAX 5

/* One file of a deploy: where it goes and its contents. */
struct ch_target_out {
	const char *what; /* the option name, for messages */
	char *path;       /* expanded destination */
	char *data;       /* owned contents, wiped when secret */
	size_t len;
	mode_t mode;
	bool secret;
};

/* At least one path, no two the same, modes that keep the key private. */
int ch_target_files_check(const struct ch_target_files *f, struct ch_err *reterr);
/* Resolves owner and group to ids ((uid_t)-1 / (gid_t)-1 when unset). */
int ch_target_files_owner(const struct ch_target_files *f, uid_t *ret_uid, gid_t *ret_gid,
			  struct ch_err *reterr);
/*
 * Fills out[] (CH_TARGET_FILES_MAX entries) with the expanded path,
 * contents and mode of every configured file, in the order cert, chain,
 * fullchain, key, combined. On failure nothing is left allocated.
 */
int ch_target_files_prepare(const struct ch_target_files *f, const struct ch_deploy_item *item,
			    struct ch_target_out *out, size_t *ret_n, struct ch_err *reterr);
/* Frees (and wipes, when secret) one prepared file. */
void ch_target_out_clear(struct ch_target_out *o);
/* The certificates (never the key) in the cert, fullchain or combined file. */
int ch_target_files_current(const struct ch_target_files *f, const char *cert_name,
			    char **ret_pem);

/*
 * A rehearsal of the files f would write: checks each destination could
 * be replaced (its directory exists and is writable, no directory or
 * symlink in the way, owner and group resolve) and writes the files below
 * scratch instead. reterr says what was written or what failed.
 */
int ch_target_files_rehearse(const struct ch_target_files *f, const struct ch_deploy_item *item,
			     const char *scratch, struct ch_err *reterr);
/*
 * For a rehearsal of writing path: checks it could be replaced and
 * returns (in *ret) where below scratch to write it instead, its
 * directory created.
 */
int ch_target_rehearse_path(const char *scratch, const char *path, const char *what, char **ret,
			    struct ch_err *reterr);
/* Checks the process in pidfile runs (signal 0); reterr says so or what failed. */
int ch_target_check_pidfile(const char *pidfile, struct ch_err *reterr);

/* Expands {name} in a path template, refusing names that are not one component. */
int ch_target_expand_path(const char *tmpl, const char *cert_name, char **ret,
			  struct ch_err *reterr);
/* Concatenates PEM parts, skipping empty ones, a newline after each. */
int ch_target_join_pem(const char *const *parts, const size_t *lens, size_t n, char **ret,
		       size_t *ret_len);
/* Keeps only the CERTIFICATE blocks of a PEM text. -EBADMSG when there is none. */
int ch_target_extract_certs(const char *pem, char **ret);

/* "SIGHUP", or "signal 40" for one without a name. */
const char *ch_target_signal_name(int sig, char *buf, size_t len);
/*
 * Reads the pid in pidfile and sends it sig. reterr says what was done
 * ("sent SIGHUP to pid 42 (from /run/nginx.pid)") or what failed.
 */
int ch_target_signal_pidfile(const char *pidfile, int sig, pid_t *ret_pid,
			     struct ch_err *reterr);

/* Calls done(r, message, arg) on the next loop turn (message is copied). */
int ch_target_done_later(struct event_base *base, ch_deploy_done_fn *done, void *arg, int r,
			 const char *message);
