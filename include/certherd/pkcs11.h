/* SPDX-License-Identifier: MIT */
/*
 * A signing key inside a PKCS#11 token, which never leaves it. The module
 * is loaded with dlopen() and initialised once per process, shared by every
 * handle naming the same path; each handle keeps one R/W session to its
 * token, logged in as the user, and reconnects on its next call after the
 * session, the token or the module went away. The PIN is read at login
 * from a file only its owner can read, or from an environment variable,
 * wiped right after C_Login, and never appears in any message. A handle is
 * used from one thread at a time.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

#include "certherd/conf.h"
#include "certherd/crypto.h"
#include "certherd/err.h"

struct ch_p11_config {
	const char *module;       /* path of the PKCS#11 module */
	const char *token_label;  /* one of token_label, token_serial */
	const char *token_serial;
	const char *key_label;    /* key_label, key_id or both */
	const char *key_id;       /* CKA_ID in hex, "01ab" or "01:ab" */
	const char *pin_file;     /* one of pin_file, pin_env */
	const char *pin_env;
	bool rsa_pss;             /* RSA keys sign with RSASSA-PSS, else PKCS#1 v1.5 */
};

struct ch_p11;

/* Checks and copies cfg; nothing is loaded yet. Returns 0 or -EINVAL/-ENOMEM. */
int ch_p11_new(const struct ch_p11_config *cfg, struct ch_p11 **ret, struct ch_err *reterr);
/* Closes the session; the module is finalised with its last handle. NULL-safe. */
struct ch_p11 *ch_p11_free(struct ch_p11 *p);

/*
 * Loads the module, finds the token, opens the session and logs in, unless
 * that is already done. Errors (the message names which, never the PIN):
 *   -ELIBACC  the module cannot be loaded or initialised
 *   -ENODEV   the token is not there, or went away (try again later)
 *   -EACCES   the token refused the PIN, or it is locked; a refused PIN is
 *             not tried again until the PIN file changes
 *   -EPERM    the PIN file can be read by others than its owner
 *   -ENOENT   no PIN file or no such environment variable
 *   -EIO      any other failure of the token
 */
int ch_p11_connect(struct ch_p11 *p, struct ch_err *reterr);

/*
 * Connects, then finds the private key by label and/or id. It must be a
 * signing key that is sensitive and never was extractable (-EKEYREJECTED
 * otherwise). With ret_pub, also returns its public key, read from the
 * matching public key object. Returns 0, -ENOKEY when there is no such
 * key, -ENOTUNIQ when several match, or a ch_p11_connect() error.
 */
int ch_p11_find_key(struct ch_p11 *p, EVP_PKEY **ret_pub, struct ch_err *reterr);

/*
 * Generates a key pair of type (ECDSA P-256/P-384, RSA-2048/3072) in the
 * token under the configured label and id: CKA_TOKEN, CKA_PRIVATE,
 * CKA_SENSITIVE, not CKA_EXTRACTABLE, CKA_SIGN only. Reads back
 * CKA_NEVER_EXTRACTABLE and CKA_ALWAYS_SENSITIVE before accepting it.
 * The key becomes this handle's key. Returns 0 or -errno.
 */
int ch_p11_generate_key(struct ch_p11 *p, enum ch_key_type type, EVP_PKEY **ret_pub,
			struct ch_err *reterr);

/*
 * Signs msg with the key found or generated: ECDSA over SHA-256 (P-256) or
 * SHA-384 (P-384) hashed here, DER-encoded; RSA with SHA-256, PKCS#1 v1.5
 * or PSS (salt 32) hashed in the token. sig has room for *sig_len bytes.
 * A lost session, token or module is reconnected, and the signature tried
 * once more on the new session. Returns 0 or a ch_p11_connect() error.
 */
int ch_p11_sign(struct ch_p11 *p, const unsigned char *msg, size_t msg_len, unsigned char *sig,
		size_t *sig_len, struct ch_err *reterr);

/* A ch_signer over ch_p11_sign() (p is borrowed); needs the key found first. */
int ch_p11_signer(struct ch_p11 *p, struct ch_signer *ret, struct ch_err *reterr);

/* How many sessions were opened and logged in so far: changes on reconnect. */
uint64_t ch_p11_connections(const struct ch_p11 *p);

/* "token \"label\"" or "token with serial \"...\"", for messages. */
const char *ch_p11_token_name(const struct ch_p11 *p);
/* "key \"label\"" or "key with id 01ab", for messages. */
const char *ch_p11_key_name(const struct ch_p11 *p);

/* Parses a hex CKA_ID ("01ab", "01:ab"); returns its length or -EINVAL. */
int ch_p11_parse_id(const char *hex, unsigned char *buf, size_t size);

/* For tests and tools: the raw module, session, slot and key handle. */
CK_FUNCTION_LIST *ch_p11_functions(const struct ch_p11 *p);
CK_SESSION_HANDLE ch_p11_session(const struct ch_p11 *p);
CK_SLOT_ID ch_p11_slot(const struct ch_p11 *p);
CK_OBJECT_HANDLE ch_p11_key(const struct ch_p11 *p);
/* Short name of a return value, e.g. "CKR_PIN_INCORRECT". */
const char *ch_p11_rv_string(CK_RV rv);
