/* SPDX-License-Identifier: MIT */
/*
 * An outside opinion on a private key in a PKCS#11 token, through the raw
 * module (not certherd's library): logs in, finds the private key by label
 * and asks for its secret (CKA_VALUE of an EC key, CKA_PRIVATE_EXPONENT of
 * an RSA key) with C_GetAttributeValue. pkcs11-tool has no such read for
 * private keys.
 *
 * Usage: p11-read-secret [--plant] MODULE TOKEN_LABEL PIN_FILE KEY_LABEL
 * Prints what the token answered. Exits 0 when the secret was read, 1 when
 * the token refused it (CKR_ATTRIBUTE_SENSITIVE), 2 on any other failure
 * (no such token or key, wrong PIN). --plant first creates a P-256 private
 * key under KEY_LABEL that is neither sensitive nor unextractable (a dummy
 * scalar), so that a test can show this program does read what a token
 * lets it read.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST *f;

static _Noreturn void
die(const char *what, CK_RV rv)
{
	fprintf(stderr, "p11-read-secret: %s: 0x%lx\n", what, (unsigned long)rv);
	exit(2);
}

/* A fixed-width, space-padded token label equals s. */
static int
label_eq(const CK_UTF8CHAR *label, size_t size, const char *s)
{
	size_t n = strlen(s);

	if (n > size || memcmp(label, s, n) != 0)
		return 0;
	for (size_t i = n; i < size; i++)
		if (label[i] != ' ')
			return 0;
	return 1;
}

/* A P-256 private key whose secret the token hands out. */
static void
plant_key(CK_SESSION_HANDLE session, const char *label)
{
	static const unsigned char p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48,
					      0xce, 0x3d, 0x03, 0x01, 0x07 };
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_KEY_TYPE type = CKK_EC;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	unsigned char scalar[32];
	CK_OBJECT_HANDLE obj;
	CK_RV rv;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &type, sizeof(type) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &no, sizeof(no) },
		{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_EC_PARAMS, (void *)p256, sizeof(p256) },
		{ CKA_VALUE, scalar, sizeof(scalar) },
	};

	memset(scalar, 0x5a, sizeof(scalar));
	if ((rv = f->C_CreateObject(session, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &obj)) != CKR_OK)
		die("C_CreateObject", rv);
}

int
main(int argc, char **argv)
{
	CK_C_GetFunctionList get_list;
	CK_SLOT_ID slots[64];
	CK_ULONG n_slots = 64, n_found = 0;
	CK_SESSION_HANDLE session;
	CK_OBJECT_HANDLE key;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_KEY_TYPE type;
	CK_ATTRIBUTE find[2], attr;
	CK_ATTRIBUTE_TYPE secret;
	char pin[256];
	unsigned char buf[8192];
	FILE *pf;
	void *mod;
	CK_RV rv;
	size_t len;
	CK_ULONG i;
	int plant = 0;

	if (argc == 6 && strcmp(argv[1], "--plant") == 0) {
		plant = 1;
		argv++;
		argc--;
	}
	if (argc != 5) {
		fprintf(stderr,
			"usage: p11-read-secret [--plant] MODULE TOKEN_LABEL PIN_FILE KEY_LABEL\n");
		return 2;
	}
	mod = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!mod) {
		fprintf(stderr, "p11-read-secret: %s\n", dlerror());
		return 2;
	}
	get_list = (CK_C_GetFunctionList)dlsym(mod, "C_GetFunctionList");
	if (!get_list || get_list(&f) != CKR_OK)
		die("C_GetFunctionList", 0);
	if ((rv = f->C_Initialize(NULL)) != CKR_OK)
		die("C_Initialize", rv);
	if ((rv = f->C_GetSlotList(CK_TRUE, slots, &n_slots)) != CKR_OK)
		die("C_GetSlotList", rv);
	for (i = 0; i < n_slots; i++) {
		CK_TOKEN_INFO ti;

		if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
		    label_eq(ti.label, sizeof(ti.label), argv[2]))
			break;
	}
	if (i == n_slots)
		die("no such token", 0);
	if ((rv = f->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
				   &session)) != CKR_OK)
		die("C_OpenSession", rv);
	pf = fopen(argv[3], "r");
	if (!pf || !fgets(pin, sizeof(pin), pf))
		die("cannot read the PIN file", 0);
	fclose(pf);
	len = strcspn(pin, "\r\n");
	rv = f->C_Login(session, CKU_USER, (CK_UTF8CHAR *)pin, (CK_ULONG)len);
	memset(pin, 0, sizeof(pin));
	if (rv != CKR_OK)
		die("C_Login", rv);
	if (plant)
		plant_key(session, argv[4]);

	find[0] = (CK_ATTRIBUTE){ CKA_CLASS, &cls, sizeof(cls) };
	find[1] = (CK_ATTRIBUTE){ CKA_LABEL, argv[4], strlen(argv[4]) };
	if ((rv = f->C_FindObjectsInit(session, find, 2)) != CKR_OK)
		die("C_FindObjectsInit", rv);
	if ((rv = f->C_FindObjects(session, &key, 1, &n_found)) != CKR_OK)
		die("C_FindObjects", rv);
	f->C_FindObjectsFinal(session);
	if (n_found != 1)
		die("no such private key", 0);

	attr = (CK_ATTRIBUTE){ CKA_KEY_TYPE, &type, sizeof(type) };
	if ((rv = f->C_GetAttributeValue(session, key, &attr, 1)) != CKR_OK)
		die("CKA_KEY_TYPE", rv);
	secret = type == CKK_RSA ? CKA_PRIVATE_EXPONENT : CKA_VALUE;
	attr = (CK_ATTRIBUTE){ secret, buf, sizeof(buf) };
	rv = f->C_GetAttributeValue(session, key, &attr, 1);
	f->C_Logout(session);
	f->C_CloseSession(session);
	f->C_Finalize(NULL);
	if (rv == CKR_OK && attr.ulValueLen != CK_UNAVAILABLE_INFORMATION) {
		printf("%s: %s read, %lu bytes\n", argv[4],
		       secret == CKA_VALUE ? "CKA_VALUE" : "CKA_PRIVATE_EXPONENT",
		       (unsigned long)attr.ulValueLen);
		return 0;
	}
	printf("%s: %s refused (%s)\n", argv[4],
	       secret == CKA_VALUE ? "CKA_VALUE" : "CKA_PRIVATE_EXPONENT",
	       rv == CKR_ATTRIBUTE_SENSITIVE ? "CKR_ATTRIBUTE_SENSITIVE" : "another error");
	return rv == CKR_ATTRIBUTE_SENSITIVE ? 1 : 2;
}
