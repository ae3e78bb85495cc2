/* SPDX-License-Identifier: MIT */
/*
 * PKCS#11 signing keys (include/certherd/pkcs11.h): modules loaded with
 * dlopen() and shared per path, one logged-in R/W session per handle,
 * keys found or generated inside the token, and C_Sign for certificates.
 * Whatever a session loss invalidates (session, key handle, slot) is
 * dropped at once and looked up again on the next call.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>

#include "certherd/macro.h"
#include "certherd/pkcs11.h"

#define P11_PIN_MAX 256
#define P11_ID_MAX 64
#define P11_SLOTS_MAX 256

/* DER OIDs of the curves, as CKA_EC_PARAMS holds them. */
static const unsigned char p11_oid_p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
					      0x3d, 0x03, 0x01, 0x07 };
static const unsigned char p11_oid_p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };

/* Signature AlgorithmIdentifiers, DER. */
static const unsigned char p11_alg_ecdsa_sha256[] = { 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48,
						      0xce, 0x3d, 0x04, 0x03, 0x02 };
static const unsigned char p11_alg_ecdsa_sha384[] = { 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48,
						      0xce, 0x3d, 0x04, 0x03, 0x03 };
static const unsigned char p11_alg_rsa_sha256[] = { 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86,
						    0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01,
						    0x0b, 0x05, 0x00 };
/* RSASSA-PSS, SHA-256, MGF1 with SHA-256, salt 32, trailer 1 (RFC 4055). */
static const unsigned char p11_alg_rsa_pss_sha256[] = {
	0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a,
	0x30, 0x34, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
	0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a,
	0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60,
	0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0xa2, 0x03, 0x02,
	0x01, 0x20,
};

/* A loaded module, shared by every handle naming its path; never unloaded. */
struct p11_module {
	char *path;
	void *dl;
	CK_FUNCTION_LIST *f;
	bool initialized; /* by us, and not finalised behind our back as far as we know */
	unsigned refs;
	struct p11_module *next;
};
static struct p11_module *p11_modules;

enum p11_kind {
	P11_KIND_NONE,
	P11_KIND_EC_P256,
	P11_KIND_EC_P384,
	P11_KIND_RSA,
};

/* What ch_p11_connect() compares to skip a PIN the token refused. */
struct p11_pin_stamp {
	bool set;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
};

struct ch_p11 {
	char *module_path, *token_label, *token_serial, *key_label, *pin_file, *pin_env;
	unsigned char key_id[P11_ID_MAX];
	size_t key_id_len;
	bool rsa_pss;
	char token_name[128], key_name[128];

	struct p11_module *mod;
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE session; /* CK_INVALID_HANDLE when not connected */
	uint64_t connections;
	CK_RV pin_refused;         /* CKR_OK, or why the last PIN was refused */
	struct p11_pin_stamp refused_stamp;

	bool want_key;             /* found or generated once: find again after reconnects */
	CK_OBJECT_HANDLE key;      /* CK_INVALID_HANDLE when not found (yet) */
	enum p11_kind kind;
	size_t ec_field;           /* bytes of r and of s */
	EVP_MD *md;                /* ECDSA: the digest computed here */
};

const char *
ch_p11_rv_string(CK_RV rv)
{
	static const struct {
		CK_RV rv;
		const char *name;
	} names[] = {
#define N(x) { x, #x }
		N(CKR_OK), N(CKR_HOST_MEMORY), N(CKR_SLOT_ID_INVALID), N(CKR_GENERAL_ERROR),
		N(CKR_FUNCTION_FAILED), N(CKR_ARGUMENTS_BAD), N(CKR_ATTRIBUTE_SENSITIVE),
		N(CKR_ATTRIBUTE_TYPE_INVALID), N(CKR_ATTRIBUTE_VALUE_INVALID), N(CKR_DEVICE_ERROR),
		N(CKR_DEVICE_MEMORY), N(CKR_DEVICE_REMOVED), N(CKR_FUNCTION_CANCELED),
		N(CKR_KEY_HANDLE_INVALID), N(CKR_KEY_TYPE_INCONSISTENT),
		N(CKR_KEY_FUNCTION_NOT_PERMITTED), N(CKR_MECHANISM_INVALID),
		N(CKR_MECHANISM_PARAM_INVALID), N(CKR_OBJECT_HANDLE_INVALID),
		N(CKR_OPERATION_ACTIVE), N(CKR_OPERATION_NOT_INITIALIZED), N(CKR_PIN_INCORRECT),
		N(CKR_PIN_INVALID), N(CKR_PIN_LEN_RANGE), N(CKR_PIN_EXPIRED), N(CKR_PIN_LOCKED),
		N(CKR_SESSION_CLOSED), N(CKR_SESSION_COUNT), N(CKR_SESSION_HANDLE_INVALID),
		N(CKR_SESSION_READ_ONLY), N(CKR_TEMPLATE_INCOMPLETE), N(CKR_TEMPLATE_INCONSISTENT),
		N(CKR_TOKEN_NOT_PRESENT), N(CKR_TOKEN_NOT_RECOGNIZED), N(CKR_TOKEN_WRITE_PROTECTED),
		N(CKR_USER_ALREADY_LOGGED_IN), N(CKR_USER_NOT_LOGGED_IN),
		N(CKR_USER_PIN_NOT_INITIALIZED), N(CKR_USER_TYPE_INVALID), N(CKR_BUFFER_TOO_SMALL),
		N(CKR_CRYPTOKI_NOT_INITIALIZED), N(CKR_CRYPTOKI_ALREADY_INITIALIZED),
		N(CKR_FUNCTION_NOT_SUPPORTED), N(CKR_DATA_LEN_RANGE), N(CKR_CANT_LOCK),
#undef N
	};
	static char buf[32];

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (names[i].rv == rv)
			return names[i].name;
	snprintf(buf, sizeof(buf), "CKR 0x%lx", (unsigned long)rv);
	return buf;
}

/* Return values after which the session (or more) has to be set up again. */
static bool
p11_rv_is_gone(CK_RV rv)
{
	switch (rv) {
	case CKR_SESSION_HANDLE_INVALID:
	case CKR_SESSION_CLOSED:
	case CKR_DEVICE_REMOVED:
	case CKR_DEVICE_ERROR:
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_TOKEN_NOT_RECOGNIZED:
	case CKR_SLOT_ID_INVALID:
	case CKR_CRYPTOKI_NOT_INITIALIZED:
	case CKR_USER_NOT_LOGGED_IN:
	case CKR_KEY_HANDLE_INVALID:
	case CKR_OBJECT_HANDLE_INVALID:
		return true;
	default:
		return false;
	}
}

/* Forgets the session and what depends on it; the next call reconnects. */
static void
p11_drop(struct ch_p11 *p, CK_RV why)
{
	if (why == CKR_CRYPTOKI_NOT_INITIALIZED && p->mod)
		p->mod->initialized = false;
	if (p->session != CK_INVALID_HANDLE && p->mod && p->mod->initialized)
		(void)p->mod->f->C_CloseSession(p->session);
	p->session = CK_INVALID_HANDLE;
	p->key = CK_INVALID_HANDLE;
}

static int
p11_module_get(const char *path, struct p11_module **ret, struct ch_err *reterr)
{
	CK_C_GetFunctionList get;
	struct p11_module *m;
	CK_RV rv;
	void *dl;

	for (m = p11_modules; m; m = m->next)
		if (streq(m->path, path)) {
			m->refs++;
			*ret = m;
			return 0;
		}
	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!dl)
		return ch_err_set(reterr, -ELIBACC, "cannot load PKCS#11 module %s: %s", path,
				  dlerror());
	get = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
	if (!get)
		return ch_err_set(reterr, -ELIBACC, "%s is not a PKCS#11 module (no C_GetFunctionList)",
				  path);
	m = calloc(1, sizeof(*m));
	if (!m || !(m->path = strdup(path))) {
		free(m);
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	}
	rv = get(&m->f);
	if (rv != CKR_OK || !m->f) {
		free(m->path);
		free(m);
		return ch_err_set(reterr, -ELIBACC, "PKCS#11 module %s: C_GetFunctionList: %s", path,
				  ch_p11_rv_string(rv));
	}
	/* Modules cannot always be unloaded safely: the handle stays open. */
	m->dl = dl;
	m->refs = 1;
	m->next = p11_modules;
	p11_modules = m;
	*ret = m;
	return 0;
}

static int
p11_module_init(struct p11_module *m, struct ch_err *reterr)
{
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
	CK_RV rv;

	if (m->initialized)
		return 0;
	rv = m->f->C_Initialize(&args);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED)
		return ch_err_set(reterr, -ELIBACC, "PKCS#11 module %s: C_Initialize: %s", m->path,
				  ch_p11_rv_string(rv));
	m->initialized = true;
	return 0;
}

/* Finalises and initialises again: modules read their slot list at C_Initialize. */
static int
p11_module_reinit(struct p11_module *m, struct ch_err *reterr)
{
	if (m->initialized)
		(void)m->f->C_Finalize(NULL);
	m->initialized = false;
	return p11_module_init(m, reterr);
}

static void
p11_module_put(struct p11_module *m)
{
	if (!m || --m->refs > 0)
		return;
	if (m->initialized)
		(void)m->f->C_Finalize(NULL);
	m->initialized = false;
}

/* A blank-padded PKCS#11 string field equals s. */
static bool
p11_field_eq(const CK_UTF8CHAR *field, size_t size, const char *s)
{
	size_t n = size;

	while (n > 0 && (field[n - 1] == ' ' || field[n - 1] == '\0'))
		n--;
	return strlen(s) == n && memcmp(field, s, n) == 0;
}

static int
p11_find_slot(struct ch_p11 *p, CK_SLOT_ID *ret, struct ch_err *reterr)
{
	CK_SLOT_ID slots[P11_SLOTS_MAX];
	CK_ULONG n = ARRAY_SIZE(slots);
	CK_RV rv;

	rv = p->mod->f->C_GetSlotList(CK_TRUE, slots, &n);
	if (rv != CKR_OK) {
		if (p11_rv_is_gone(rv))
			p11_drop(p, rv);
		return ch_err_set(reterr, -ENODEV, "PKCS#11 module %s: C_GetSlotList: %s",
				  p->module_path, ch_p11_rv_string(rv));
	}
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;

		if (p->mod->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		if (!(ti.flags & CKF_TOKEN_INITIALIZED))
			continue;
		if (p->token_label && !p11_field_eq(ti.label, sizeof(ti.label), p->token_label))
			continue;
		if (p->token_serial &&
		    !p11_field_eq(ti.serialNumber, sizeof(ti.serialNumber), p->token_serial))
			continue;
		*ret = slots[i];
		return 0;
	}
	return ch_err_set(reterr, -ENODEV, "PKCS#11 %s not found in module %s", p->token_name,
			  p->module_path);
}

static bool
p11_stamp_eq(const struct p11_pin_stamp *a, const struct p11_pin_stamp *b)
{
	return a->set && b->set && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
	       a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

static int
p11_pin_stat(int fd, const char *path, struct p11_pin_stamp *ret, struct ch_err *reterr)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return ch_err_set(reterr, -errno, "cannot stat PIN file %s: %s", path,
				  strerror(errno));
	if (!S_ISREG(st.st_mode))
		return ch_err_set(reterr, -EPERM, "PIN file %s is not a regular file", path);
	if (st.st_mode & 077)
		return ch_err_set(reterr, -EPERM,
				  "PIN file %s can be read or written by group or others "
				  "(mode %04o): refusing it; make it 0400 or 0600",
				  path, (unsigned)(st.st_mode & 07777));
	if (st.st_uid != geteuid())
		return ch_err_set(reterr, -EPERM,
				  "PIN file %s belongs to uid %u, not to this daemon's uid %u", path,
				  (unsigned)st.st_uid, (unsigned)geteuid());
	*ret = (struct p11_pin_stamp){
		.set = true,
		.dev = st.st_dev,
		.ino = st.st_ino,
		.size = st.st_size,
		.mtime = st.st_mtim,
		.ctime = st.st_ctim,
	};
	return 0;
}

/*
 * Reads the PIN into pin (P11_PIN_MAX bytes, wiped by the caller) and the
 * file's stamp. Returns its length or -errno; messages never hold the PIN.
 */
static int
p11_pin_read(struct ch_p11 *p, char *pin, struct p11_pin_stamp *stamp, struct ch_err *reterr)
{
	_cleanup_close_ int fd = -1;
	size_t len = 0;
	ssize_t n;
	int r;

	if (p->pin_env) {
		const char *v = getenv(p->pin_env);

		if (!v || !*v)
			return ch_err_set(reterr, -ENOENT,
					  "the PIN environment variable %s is not set", p->pin_env);
		len = strlen(v);
		if (len >= P11_PIN_MAX)
			return ch_err_set(reterr, -EINVAL,
					  "the PIN in environment variable %s is too long",
					  p->pin_env);
		memcpy(pin, v, len);
		return (int)len;
	}
	fd = open(p->pin_file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		r = -errno;
		return ch_err_set(reterr, r, "cannot open PIN file %s: %s", p->pin_file,
				  strerror(-r));
	}
	r = p11_pin_stat(fd, p->pin_file, stamp, reterr);
	if (r < 0)
		return r;
	while (len < P11_PIN_MAX) {
		n = read(fd, pin + len, P11_PIN_MAX - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return ch_err_set(reterr, -errno, "cannot read PIN file %s: %s", p->pin_file,
					  strerror(errno));
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len >= P11_PIN_MAX)
		return ch_err_set(reterr, -EINVAL, "PIN file %s is too long", p->pin_file);
	/* One line: a trailing newline is not part of the PIN. */
	while (len > 0 && (pin[len - 1] == '\n' || pin[len - 1] == '\r'))
		len--;
	if (len == 0)
		return ch_err_set(reterr, -EINVAL, "PIN file %s is empty", p->pin_file);
	if (memchr(pin, '\n', len))
		return ch_err_set(reterr, -EINVAL, "PIN file %s has more than one line",
				  p->pin_file);
	return (int)len;
}

static const char *
p11_pin_source(const struct ch_p11 *p, char *buf, size_t size)
{
	if (p->pin_env)
		snprintf(buf, size, "environment variable %s", p->pin_env);
	else
		snprintf(buf, size, "PIN file %s", p->pin_file);
	return buf;
}

static int
p11_login(struct ch_p11 *p, struct ch_err *reterr)
{
	char pin[P11_PIN_MAX];
	struct p11_pin_stamp stamp = { 0 };
	char src[512];
	CK_RV rv;
	int r;

	p11_pin_source(p, src, sizeof(src));
	r = p11_pin_read(p, pin, &stamp, reterr);
	if (r >= 0 && p->pin_refused != CKR_OK &&
	    (p->pin_env || p11_stamp_eq(&stamp, &p->refused_stamp))) {
		/* The same PIN again would only count towards locking the token. */
		explicit_bzero(pin, sizeof(pin));
		return ch_err_set(reterr, -EACCES,
				  "PKCS#11 %s refused the PIN from %s (%s); not trying it again "
				  "until it changes",
				  p->token_name, src, ch_p11_rv_string(p->pin_refused));
	}
	if (r < 0) {
		explicit_bzero(pin, sizeof(pin));
		return r;
	}
	rv = p->mod->f->C_Login(p->session, CKU_USER, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)r);
	explicit_bzero(pin, sizeof(pin));
	switch (rv) {
	case CKR_OK:
	case CKR_USER_ALREADY_LOGGED_IN:
		p->pin_refused = CKR_OK;
		return 0;
	case CKR_PIN_INCORRECT:
	case CKR_PIN_INVALID:
	case CKR_PIN_LEN_RANGE:
	case CKR_PIN_EXPIRED:
	case CKR_PIN_LOCKED:
		p->pin_refused = rv;
		p->refused_stamp = stamp;
		return ch_err_set(reterr, -EACCES, "PKCS#11 %s refused the PIN from %s (%s)",
				  p->token_name, src, ch_p11_rv_string(rv));
	default:
		if (p11_rv_is_gone(rv))
			return ch_err_set(reterr, -ENODEV, "PKCS#11 %s: C_Login: %s", p->token_name,
					  ch_p11_rv_string(rv));
		return ch_err_set(reterr, -EIO, "PKCS#11 %s: C_Login: %s", p->token_name,
				  ch_p11_rv_string(rv));
	}
}

int
ch_p11_connect(struct ch_p11 *p, struct ch_err *reterr)
{
	CK_RV rv;
	int r;

	if (p->session != CK_INVALID_HANDLE && p->mod->initialized)
		return 0;
	p11_drop(p, CKR_OK);
	if (!p->mod) {
		r = p11_module_get(p->module_path, &p->mod, reterr);
		if (r < 0)
			return r;
	}
	r = p11_module_init(p->mod, reterr);
	if (r < 0)
		return r;
	r = p11_find_slot(p, &p->slot, reterr);
	if (r == -ENODEV && p->mod->refs == 1 && p->mod->initialized) {
		/* A token created or re-inserted since C_Initialize may need a fresh slot list. */
		r = p11_module_reinit(p->mod, reterr);
		if (r >= 0)
			r = p11_find_slot(p, &p->slot, reterr);
	}
	if (r < 0)
		return r;
	rv = p->mod->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
				      &p->session);
	if (rv != CKR_OK) {
		p->session = CK_INVALID_HANDLE;
		if (rv == CKR_CRYPTOKI_NOT_INITIALIZED)
			p->mod->initialized = false;
		return ch_err_set(reterr, p11_rv_is_gone(rv) ? -ENODEV : -EIO,
				  "PKCS#11 %s: C_OpenSession: %s", p->token_name,
				  ch_p11_rv_string(rv));
	}
	r = p11_login(p, reterr);
	if (r < 0) {
		p11_drop(p, CKR_OK);
		return r;
	}
	p->connections++;
	return 0;
}

static int
p11_fail(struct ch_p11 *p, CK_RV rv, const char *what, struct ch_err *reterr)
{
	if (p11_rv_is_gone(rv)) {
		p11_drop(p, rv);
		return ch_err_set(reterr, -ENODEV, "PKCS#11 %s went away (%s: %s)", p->token_name,
				  what, ch_p11_rv_string(rv));
	}
	return ch_err_set(reterr, -EIO, "PKCS#11 %s: %s: %s", p->token_name, what,
			  ch_p11_rv_string(rv));
}

/* The one object of class cls with the configured label and/or id. */
static int
p11_find_object(struct ch_p11 *p, CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *ret,
		struct ch_err *reterr)
{
	CK_ATTRIBUTE tmpl[3];
	CK_OBJECT_HANDLE found[2];
	CK_ULONG n = 0, nt = 0;
	CK_RV rv;

	tmpl[nt++] = (CK_ATTRIBUTE){ CKA_CLASS, &cls, sizeof(cls) };
	if (p->key_label)
		tmpl[nt++] = (CK_ATTRIBUTE){ CKA_LABEL, p->key_label, strlen(p->key_label) };
	if (p->key_id_len)
		tmpl[nt++] = (CK_ATTRIBUTE){ CKA_ID, p->key_id, p->key_id_len };
	rv = p->mod->f->C_FindObjectsInit(p->session, tmpl, nt);
	if (rv != CKR_OK)
		return p11_fail(p, rv, "C_FindObjectsInit", reterr);
	rv = p->mod->f->C_FindObjects(p->session, found, ARRAY_SIZE(found), &n);
	(void)p->mod->f->C_FindObjectsFinal(p->session);
	if (rv != CKR_OK)
		return p11_fail(p, rv, "C_FindObjects", reterr);
	if (n == 0)
		return ch_err_set(reterr, -ENOKEY, "PKCS#11 %s has no %s %s", p->token_name,
				  cls == CKO_PRIVATE_KEY ? "private" : "public", p->key_name);
	if (n > 1)
		return ch_err_set(reterr, -ENOTUNIQ,
				  "PKCS#11 %s has several %s keys matching %s: give key_id", p->token_name,
				  cls == CKO_PRIVATE_KEY ? "private" : "public", p->key_name);
	*ret = found[0];
	return 0;
}

/* Reads the key's type and checks it can sign and never left the token. */
static int
p11_key_inspect(struct ch_p11 *p, CK_OBJECT_HANDLE key, struct ch_err *reterr)
{
	CK_KEY_TYPE type = 0;
	CK_BBOOL sign = CK_FALSE, sensitive = CK_FALSE, extractable = CK_TRUE;
	CK_BBOOL always = CK_FALSE, never = CK_FALSE;
	unsigned char params[64];
	CK_ATTRIBUTE a[] = {
		{ CKA_KEY_TYPE, &type, sizeof(type) },
		{ CKA_SIGN, &sign, sizeof(sign) },
		{ CKA_SENSITIVE, &sensitive, sizeof(sensitive) },
		{ CKA_EXTRACTABLE, &extractable, sizeof(extractable) },
		{ CKA_ALWAYS_SENSITIVE, &always, sizeof(always) },
		{ CKA_NEVER_EXTRACTABLE, &never, sizeof(never) },
	};
	CK_ATTRIBUTE ec = { CKA_EC_PARAMS, params, sizeof(params) };
	const char *digest;
	CK_RV rv;

	rv = p->mod->f->C_GetAttributeValue(p->session, key, a, ARRAY_SIZE(a));
	if (rv != CKR_OK)
		return p11_fail(p, rv, "C_GetAttributeValue", reterr);
	if (!sign)
		return ch_err_set(reterr, -EKEYREJECTED,
				  "PKCS#11 %s: %s may not sign (CKA_SIGN is false)", p->token_name,
				  p->key_name);
	if (!sensitive || extractable || !always || !never)
		return ch_err_set(reterr, -EKEYREJECTED,
				  "PKCS#11 %s: %s is or was extractable or not sensitive "
				  "(CKA_SENSITIVE=%d CKA_EXTRACTABLE=%d CKA_ALWAYS_SENSITIVE=%d "
				  "CKA_NEVER_EXTRACTABLE=%d): refusing it",
				  p->token_name, p->key_name, !!sensitive, !!extractable, !!always,
				  !!never);
	switch (type) {
	case CKK_RSA:
		p->kind = P11_KIND_RSA;
		p->ec_field = 0;
		EVP_MD_free(p->md);
		p->md = NULL;
		return 0;
	case CKK_EC:
		rv = p->mod->f->C_GetAttributeValue(p->session, key, &ec, 1);
		if (rv != CKR_OK)
			return p11_fail(p, rv, "C_GetAttributeValue(CKA_EC_PARAMS)", reterr);
		if (ec.ulValueLen == sizeof(p11_oid_p256) &&
		    memcmp(params, p11_oid_p256, sizeof(p11_oid_p256)) == 0) {
			p->kind = P11_KIND_EC_P256;
			p->ec_field = 32;
			digest = "SHA256";
		} else if (ec.ulValueLen == sizeof(p11_oid_p384) &&
			   memcmp(params, p11_oid_p384, sizeof(p11_oid_p384)) == 0) {
			p->kind = P11_KIND_EC_P384;
			p->ec_field = 48;
			digest = "SHA384";
		} else
			return ch_err_set(reterr, -EKEYREJECTED,
					  "PKCS#11 %s: %s is on a curve other than P-256 and P-384",
					  p->token_name, p->key_name);
		if (!p->md || !EVP_MD_is_a(p->md, digest)) {
			EVP_MD_free(p->md);
			p->md = EVP_MD_fetch(NULL, digest, NULL);
			if (!p->md)
				return ch_err_set(reterr, -EIO, "cannot fetch %s", digest);
		}
		return 0;
	default:
		return ch_err_set(reterr, -EKEYREJECTED,
				  "PKCS#11 %s: %s is neither an RSA nor an EC key", p->token_name,
				  p->key_name);
	}
}

/* Reads an attribute of unknown length into a new buffer. */
static int
p11_get_attr(struct ch_p11 *p, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type,
	     unsigned char **ret, size_t *ret_len, struct ch_err *reterr)
{
	CK_ATTRIBUTE a = { type, NULL, 0 };
	unsigned char *buf;
	CK_RV rv;

	rv = p->mod->f->C_GetAttributeValue(p->session, obj, &a, 1);
	if (rv != CKR_OK)
		return p11_fail(p, rv, "C_GetAttributeValue", reterr);
	if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen == 0 ||
	    a.ulValueLen > 4096)
		return ch_err_set(reterr, -EBADMSG, "PKCS#11 %s: public key attribute unavailable",
				  p->token_name);
	buf = malloc(a.ulValueLen);
	if (!buf)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	a.pValue = buf;
	rv = p->mod->f->C_GetAttributeValue(p->session, obj, &a, 1);
	if (rv != CKR_OK) {
		free(buf);
		return p11_fail(p, rv, "C_GetAttributeValue", reterr);
	}
	*ret = buf;
	*ret_len = a.ulValueLen;
	return 0;
}

static int
p11_pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld, EVP_PKEY **ret)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	int r = -EBADMSG;

	if (params && ctx && EVP_PKEY_fromdata_init(ctx) == 1 &&
	    EVP_PKEY_fromdata(ctx, ret, EVP_PKEY_PUBLIC_KEY, params) == 1)
		r = 0;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return r;
}

/* The public key object's key as an EVP_PKEY. */
static int
p11_read_public(struct ch_p11 *p, EVP_PKEY **ret, struct ch_err *reterr)
{
	_cleanup_free_ unsigned char *a = NULL, *b = NULL;
	size_t alen = 0, blen = 0;
	CK_OBJECT_HANDLE pub;
	OSSL_PARAM_BLD *bld;
	BIGNUM *n = NULL, *e = NULL;
	int r;

	r = p11_find_object(p, CKO_PUBLIC_KEY, &pub, reterr);
	if (r < 0)
		return r;
	bld = OSSL_PARAM_BLD_new();
	if (!bld)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	if (p->kind == P11_KIND_RSA) {
		r = p11_get_attr(p, pub, CKA_MODULUS, &a, &alen, reterr);
		if (r >= 0)
			r = p11_get_attr(p, pub, CKA_PUBLIC_EXPONENT, &b, &blen, reterr);
		if (r < 0)
			goto out;
		n = BN_bin2bn(a, (int)alen, NULL);
		e = BN_bin2bn(b, (int)blen, NULL);
		r = -EBADMSG;
		if (n && e && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
		    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
			r = p11_pkey_fromdata("RSA", bld, ret);
	} else {
		const unsigned char *point;
		size_t plen;

		r = p11_get_attr(p, pub, CKA_EC_POINT, &a, &alen, reterr);
		if (r < 0)
			goto out;
		/* CKA_EC_POINT is a DER OCTET STRING around the point; some modules omit it. */
		point = a;
		plen = alen;
		if (alen != 1 + 2 * p->ec_field) {
			if (alen < 3 || a[0] != 0x04 || alen - (a[1] == 0x81 ? 3 : 2) !=
							       1 + 2 * p->ec_field) {
				r = ch_err_set(reterr, -EBADMSG,
					       "PKCS#11 %s: unreadable CKA_EC_POINT of %s",
					       p->token_name, p->key_name);
				goto out;
			}
			point = a + (a[1] == 0x81 ? 3 : 2);
			plen = 1 + 2 * p->ec_field;
		}
		r = -EBADMSG;
		if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
						    p->kind == P11_KIND_EC_P256 ? "P-256" : "P-384",
						    0) &&
		    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, plen))
			r = p11_pkey_fromdata("EC", bld, ret);
	}
	if (r < 0)
		ch_err_set_ssl(reterr, r, "cannot use the token's public key");
out:
	BN_free(n);
	BN_free(e);
	OSSL_PARAM_BLD_free(bld);
	return r;
}

int
ch_p11_find_key(struct ch_p11 *p, EVP_PKEY **ret_pub, struct ch_err *reterr)
{
	CK_OBJECT_HANDLE key;
	int r;

	r = ch_p11_connect(p, reterr);
	if (r < 0)
		return r;
	r = p11_find_object(p, CKO_PRIVATE_KEY, &key, reterr);
	if (r < 0)
		return r;
	r = p11_key_inspect(p, key, reterr);
	if (r < 0)
		return r;
	if (ret_pub) {
		r = p11_read_public(p, ret_pub, reterr);
		if (r < 0)
			return r;
	}
	p->key = key;
	p->want_key = true;
	return 0;
}

int
ch_p11_generate_key(struct ch_p11 *p, enum ch_key_type type, EVP_PKEY **ret_pub,
		    struct ch_err *reterr)
{
	CK_BBOOL t = CK_TRUE, f = CK_FALSE;
	CK_ULONG bits = 0;
	CK_BYTE e[] = { 0x01, 0x00, 0x01 };
	unsigned char id[16];
	const void *id_val = p->key_id;
	size_t id_len = p->key_id_len;
	CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_ATTRIBUTE pub[8], priv[12];
	CK_ULONG npub = 0, npriv = 0;
	CK_OBJECT_HANDLE hpub, hpriv;
	const unsigned char *oid = NULL;
	size_t oid_len = 0;
	CK_RV rv;
	int r;

	switch (type) {
	case CH_KEY_ECDSA_P256:
		oid = p11_oid_p256;
		oid_len = sizeof(p11_oid_p256);
		break;
	case CH_KEY_ECDSA_P384:
		oid = p11_oid_p384;
		oid_len = sizeof(p11_oid_p384);
		break;
	case CH_KEY_RSA_2048:
		bits = 2048;
		break;
	case CH_KEY_RSA_3072:
		bits = 3072;
		break;
	default:
		return ch_err_set(reterr, -EINVAL, "PKCS#11 keys can be %s",
				  "ecdsa-p256, ecdsa-p384, rsa-2048 or rsa-3072");
	}
	r = ch_p11_connect(p, reterr);
	if (r < 0)
		return r;
	if (id_len == 0) {
		/* An id pairs the two halves for other tools; random when none is configured. */
		if (RAND_bytes(id, sizeof(id)) != 1)
			return ch_err_set(reterr, -EIO, "no random bytes");
		id_val = id;
		id_len = sizeof(id);
	}

	pub[npub++] = (CK_ATTRIBUTE){ CKA_TOKEN, &t, sizeof(t) };
	pub[npub++] = (CK_ATTRIBUTE){ CKA_PRIVATE, &f, sizeof(f) };
	pub[npub++] = (CK_ATTRIBUTE){ CKA_VERIFY, &t, sizeof(t) };
	pub[npub++] = (CK_ATTRIBUTE){ CKA_ID, (void *)id_val, id_len };
	priv[npriv++] = (CK_ATTRIBUTE){ CKA_TOKEN, &t, sizeof(t) };
	priv[npriv++] = (CK_ATTRIBUTE){ CKA_PRIVATE, &t, sizeof(t) };
	priv[npriv++] = (CK_ATTRIBUTE){ CKA_SENSITIVE, &t, sizeof(t) };
	priv[npriv++] = (CK_ATTRIBUTE){ CKA_EXTRACTABLE, &f, sizeof(f) };
	priv[npriv++] = (CK_ATTRIBUTE){ CKA_SIGN, &t, sizeof(t) };
	priv[npriv++] = (CK_ATTRIBUTE){ CKA_DECRYPT, &f, sizeof(f) };
	priv[npriv++] = (CK_ATTRIBUTE){ CKA_UNWRAP, &f, sizeof(f) };
	priv[npriv++] = (CK_ATTRIBUTE){ CKA_DERIVE, &f, sizeof(f) };
	priv[npriv++] = (CK_ATTRIBUTE){ CKA_ID, (void *)id_val, id_len };
	if (p->key_label) {
		pub[npub++] = (CK_ATTRIBUTE){ CKA_LABEL, p->key_label, strlen(p->key_label) };
		priv[npriv++] = (CK_ATTRIBUTE){ CKA_LABEL, p->key_label, strlen(p->key_label) };
	}
	if (oid) {
		pub[npub++] = (CK_ATTRIBUTE){ CKA_EC_PARAMS, (void *)oid, oid_len };
	} else {
		mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
		pub[npub++] = (CK_ATTRIBUTE){ CKA_MODULUS_BITS, &bits, sizeof(bits) };
		pub[npub++] = (CK_ATTRIBUTE){ CKA_PUBLIC_EXPONENT, e, sizeof(e) };
	}
	rv = p->mod->f->C_GenerateKeyPair(p->session, &mech, pub, npub, priv, npriv, &hpub, &hpriv);
	if (rv != CKR_OK)
		return p11_fail(p, rv, "C_GenerateKeyPair", reterr);
	r = p11_key_inspect(p, hpriv, reterr);
	if (r >= 0 && ret_pub) {
		if (!p->key_id_len) {
			/* Look the public half up by the id it was given. */
			memcpy(p->key_id, id, sizeof(id));
			p->key_id_len = sizeof(id);
			r = p11_read_public(p, ret_pub, reterr);
			p->key_id_len = 0;
		} else
			r = p11_read_public(p, ret_pub, reterr);
	}
	if (r < 0) {
		(void)p->mod->f->C_DestroyObject(p->session, hpriv);
		(void)p->mod->f->C_DestroyObject(p->session, hpub);
		return r;
	}
	p->key = hpriv;
	p->want_key = true;
	return 0;
}

/*
 * One C_SignInit + C_Sign. Returns 0, 1 when the module failed with
 * *ret_rv (no message set), or -errno for a local failure.
 */
static int
p11_sign_once(struct ch_p11 *p, const unsigned char *msg, size_t msg_len, unsigned char *sig,
	      size_t *sig_len, CK_RV *ret_rv, struct ch_err *reterr)
{
	CK_RSA_PKCS_PSS_PARAMS pss = { CKM_SHA256, CKG_MGF1_SHA256, 32 };
	CK_MECHANISM mech = { CKM_SHA256_RSA_PKCS, NULL, 0 };
	unsigned char digest[EVP_MAX_MD_SIZE], raw[2 * 66];
	unsigned int dlen = 0;
	ECDSA_SIG *es;
	BIGNUM *br, *bs;
	unsigned char *out = sig;
	CK_ULONG len;
	CK_RV rv;
	int n = -1;

	if (p->kind == P11_KIND_RSA) {
		if (p->rsa_pss) {
			mech.mechanism = CKM_SHA256_RSA_PKCS_PSS;
			mech.pParameter = &pss;
			mech.ulParameterLen = sizeof(pss);
		}
		len = (CK_ULONG)*sig_len;
		rv = p->mod->f->C_SignInit(p->session, &mech, p->key);
		if (rv == CKR_OK)
			rv = p->mod->f->C_Sign(p->session, (CK_BYTE_PTR)msg, msg_len, sig, &len);
		*ret_rv = rv;
		if (rv != CKR_OK)
			return 1;
		*sig_len = len;
		return 0;
	}

	/* ECDSA: SoftHSM offers no CKM_ECDSA_SHA256; hash here, then r||s becomes DER. */
	if (!EVP_Digest(msg, msg_len, digest, &dlen, p->md, NULL))
		return ch_err_set_ssl(reterr, -EIO, "cannot hash the certificate");
	mech.mechanism = CKM_ECDSA;
	len = sizeof(raw);
	rv = p->mod->f->C_SignInit(p->session, &mech, p->key);
	if (rv == CKR_OK)
		rv = p->mod->f->C_Sign(p->session, digest, dlen, raw, &len);
	*ret_rv = rv;
	if (rv != CKR_OK)
		return 1;
	if (len != 2 * p->ec_field)
		return ch_err_set(reterr, -EIO,
				  "PKCS#11 %s returned an ECDSA signature of %lu bytes",
				  p->token_name, (unsigned long)len);
	es = ECDSA_SIG_new();
	br = BN_bin2bn(raw, (int)p->ec_field, NULL);
	bs = BN_bin2bn(raw + p->ec_field, (int)p->ec_field, NULL);
	if (es && br && bs && ECDSA_SIG_set0(es, br, bs)) {
		br = bs = NULL;
		if (i2d_ECDSA_SIG(es, NULL) <= (int)*sig_len)
			n = i2d_ECDSA_SIG(es, &out);
	}
	BN_free(br);
	BN_free(bs);
	ECDSA_SIG_free(es);
	if (n <= 0)
		return ch_err_set_ssl(reterr, -EIO, "cannot encode the ECDSA signature");
	*sig_len = (size_t)n;
	return 0;
}

int
ch_p11_sign(struct ch_p11 *p, const unsigned char *msg, size_t msg_len, unsigned char *sig,
	    size_t *sig_len, struct ch_err *reterr)
{
	size_t room = *sig_len;
	CK_RV rv = CKR_OK;
	int r;

	if (!p->want_key)
		return ch_err_set(reterr, -ENOKEY, "PKCS#11 %s: no key found yet", p->token_name);
	/* The second round runs on a fresh session, only when the first lost its own. */
	for (int round = 0; round < 2; round++) {
		bool fresh = p->session == CK_INVALID_HANDLE || p->key == CK_INVALID_HANDLE;

		if (fresh) {
			r = ch_p11_find_key(p, NULL, reterr);
			if (r < 0)
				return r;
		}
		*sig_len = room;
		r = p11_sign_once(p, msg, msg_len, sig, sig_len, &rv, reterr);
		if (r <= 0)
			return r;
		if (!p11_rv_is_gone(rv))
			return ch_err_set(reterr, -EIO, "PKCS#11 %s: C_Sign with %s: %s",
					  p->token_name, p->key_name, ch_p11_rv_string(rv));
		p11_drop(p, rv);
		if (fresh)
			break;
	}
	return ch_err_set(reterr, -ENODEV, "PKCS#11 %s went away while signing (%s)",
			  p->token_name, ch_p11_rv_string(rv));
}

static int
p11_sign_cb(void *arg, const unsigned char *tbs, size_t tbs_len, unsigned char *sig,
	    size_t *sig_len, struct ch_err *reterr)
{
	return ch_p11_sign(arg, tbs, tbs_len, sig, sig_len, reterr);
}

int
ch_p11_signer(struct ch_p11 *p, struct ch_signer *ret, struct ch_err *reterr)
{
	*ret = (struct ch_signer){ .sign = p11_sign_cb, .arg = p };
	switch (p->kind) {
	case P11_KIND_EC_P256:
		ret->sigalg_der = p11_alg_ecdsa_sha256;
		ret->sigalg_len = sizeof(p11_alg_ecdsa_sha256);
		return 0;
	case P11_KIND_EC_P384:
		ret->sigalg_der = p11_alg_ecdsa_sha384;
		ret->sigalg_len = sizeof(p11_alg_ecdsa_sha384);
		return 0;
	case P11_KIND_RSA:
		if (p->rsa_pss) {
			ret->sigalg_der = p11_alg_rsa_pss_sha256;
			ret->sigalg_len = sizeof(p11_alg_rsa_pss_sha256);
		} else {
			ret->sigalg_der = p11_alg_rsa_sha256;
			ret->sigalg_len = sizeof(p11_alg_rsa_sha256);
		}
		return 0;
	default:
		return ch_err_set(reterr, -ENOKEY, "PKCS#11 %s: no key found yet", p->token_name);
	}
}

int
ch_p11_parse_id(const char *hex, unsigned char *buf, size_t size)
{
	size_t n = 0;

	for (const char *s = hex; *s;) {
		unsigned v = 0;

		if (*s == ':') {
			s++;
			continue;
		}
		for (int k = 0; k < 2; k++, s++) {
			int c = (unsigned char)*s;

			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= (unsigned)(c - '0');
			else if (c >= 'a' && c <= 'f')
				v |= (unsigned)(c - 'a' + 10);
			else if (c >= 'A' && c <= 'F')
				v |= (unsigned)(c - 'A' + 10);
			else
				return -EINVAL;
		}
		if (n >= size)
			return -EINVAL;
		buf[n++] = (unsigned char)v;
	}
	return n > 0 ? (int)n : -EINVAL;
}

int
ch_p11_new(const struct ch_p11_config *cfg, struct ch_p11 **ret, struct ch_err *reterr)
{
	struct ch_p11 *p;
	int n;

	if (!cfg->module)
		return ch_err_set(reterr, -EINVAL, "no PKCS#11 module");
	if (!cfg->token_label == !cfg->token_serial)
		return ch_err_set(reterr, -EINVAL, "give one of token_label and token_serial");
	if (!cfg->key_label && !cfg->key_id)
		return ch_err_set(reterr, -EINVAL, "give key_label, key_id or both");
	if (!cfg->pin_file == !cfg->pin_env)
		return ch_err_set(reterr, -EINVAL, "give one of pin_file and pin_env");
	p = calloc(1, sizeof(*p));
	if (!p)
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	p->session = CK_INVALID_HANDLE;
	p->key = CK_INVALID_HANDLE;
	p->rsa_pss = cfg->rsa_pss;
	if (cfg->key_id) {
		n = ch_p11_parse_id(cfg->key_id, p->key_id, sizeof(p->key_id));
		if (n < 0) {
			ch_p11_free(p);
			return ch_err_set(reterr, -EINVAL, "key_id \"%s\" is not hex", cfg->key_id);
		}
		p->key_id_len = (size_t)n;
	}
#define DUP(x) (!cfg->x || (p->x = strdup(cfg->x)))
	if (!(p->module_path = strdup(cfg->module)) || !DUP(token_label) || !DUP(token_serial) ||
	    !DUP(key_label) || !DUP(pin_file) || !DUP(pin_env)) {
		ch_p11_free(p);
		return ch_err_set(reterr, -ENOMEM, "out of memory");
	}
#undef DUP
	if (p->token_label)
		snprintf(p->token_name, sizeof(p->token_name), "token \"%s\"", p->token_label);
	else
		snprintf(p->token_name, sizeof(p->token_name), "token with serial \"%s\"",
			 p->token_serial);
	if (p->key_label)
		snprintf(p->key_name, sizeof(p->key_name), "key \"%s\"", p->key_label);
	else
		snprintf(p->key_name, sizeof(p->key_name), "key with id %s", cfg->key_id);
	*ret = p;
	return 0;
}

struct ch_p11 *
ch_p11_free(struct ch_p11 *p)
{
	if (!p)
		return NULL;
	p11_drop(p, CKR_OK);
	p11_module_put(p->mod);
	EVP_MD_free(p->md);
	free(p->module_path);
	free(p->token_label);
	free(p->token_serial);
	free(p->key_label);
	free(p->pin_file);
	free(p->pin_env);
	free(p);
	return NULL;
}

uint64_t
ch_p11_connections(const struct ch_p11 *p)
{
	return p->connections;
}

const char *
ch_p11_token_name(const struct ch_p11 *p)
{
	return p->token_name;
}

const char *
ch_p11_key_name(const struct ch_p11 *p)
{
	return p->key_name;
}

CK_FUNCTION_LIST *
ch_p11_functions(const struct ch_p11 *p)
{
	return p->mod ? p->mod->f : NULL;
}

CK_SESSION_HANDLE
ch_p11_session(const struct ch_p11 *p)
{
	return p->session;
}

CK_SLOT_ID
ch_p11_slot(const struct ch_p11 *p)
{
	return p->slot;
}

CK_OBJECT_HANDLE
ch_p11_key(const struct ch_p11 *p)
{
	return p->key;
}
