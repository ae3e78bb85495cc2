/* SPDX-License-Identifier: MIT */
/*
 * The scheduler's "next due" lookup, as the daemon makes it: the store's
 * own statement text and ch_store_cert_next_due() on an existing inventory.
 * The store is compiled in from its source so that the statement text
 * printed is the one the daemon prepares.
 *
 *   bench-nextdue sql               print the statement
 *   bench-nextdue time DB [COUNT]   time COUNT lookups (default 20000)
 */
#include "../../src/lib/store.c"

#include <time.h>

int main(int argc, char **argv);

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

int
main(int argc, char **argv)
{
	struct ch_store *s = NULL;
	struct ch_err err = { "" };
	long count = 20000;
	double *v, sum = 0;
	char first[128] = "";

	if (argc >= 2 && streq(argv[1], "sql")) {
		puts(store_sql[STORE_SQL_CERT_NEXT_DUE]);
		return 0;
	}
	if (argc < 3 || !streq(argv[1], "time")) {
		fprintf(stderr, "usage: %s sql | time DB [COUNT]\n", argv[0]);
		return 2;
	}
	if (argc >= 4)
		count = strtol(argv[3], NULL, 10);
	if (count < 1)
		count = 1;
	if (ch_store_open(argv[2], &s, &err) < 0) {
		fprintf(stderr, "cannot open %s: %s\n", argv[2], err.msg);
		return 1;
	}
	v = calloc((size_t)count, sizeof(*v));
	if (!v)
		return 1;
	for (int i = 0; i < 200; i++) { /* warm the page cache and the statement */
		struct ch_store_cert c = { 0 };

		if (ch_store_cert_next_due(s, &c) < 0) {
			fprintf(stderr, "next due: no row\n");
			return 1;
		}
		snprintf(first, sizeof(first), "%s", c.name);
		ch_store_cert_done(&c);
	}
	for (long i = 0; i < count; i++) {
		struct ch_store_cert c = { 0 };
		double t0 = now_us();

		if (ch_store_cert_next_due(s, &c) < 0)
			return 1;
		v[i] = now_us() - t0;
		sum += v[i];
		ch_store_cert_done(&c);
	}
	qsort(v, (size_t)count, sizeof(*v), cmp_double);
	printf("lookups=%ld median_us=%.2f p99_us=%.2f max_us=%.2f mean_us=%.2f first=%s\n", count,
	       v[count / 2], v[count * 99 / 100], v[count - 1], sum / (double)count, first);
	free(v);
	ch_store_free(s);
	return 0;
}
