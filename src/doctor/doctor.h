/* doctor.h: the posture report behind GET /v1/doctor and `paasops
 * doctor`: a fixed list of checks, each looking at the real state of one
 * thing (file modes in the data dir, where the API listens, tokens, the
 * audit chain, the daemon's user, cgroups, disk, apps' specs and instances,
 * firing alerts) and saying ok, warn or fail with a one-line summary naming
 * what it found and a hint saying what to do.
 *
 * Check ids are stable: scripts and doc/doctor.md name them. Checks only
 * read; they run on the control loop thread, like the store. */
#ifndef PAASOPS_DOCTOR_H
#define PAASOPS_DOCTOR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;
struct audit_verdict;
struct supervisor;
struct alerts;
struct json;

enum doctor_status { DOCTOR_OK, DOCTOR_WARN, DOCTOR_FAIL, DOCTOR_NSTATUS };

/* What the checks look at. Everything is borrowed for the call. */
struct doctor_input {
	const char *data_dir;    /* absolute */
	const char *socket_path; /* the API's unix socket */
	const char *tcp_addr;    /* --api HOST:PORT, or NULL when the API is on the socket only */
	bool tcp_tls;            /* the TCP API is served over TLS (false while it cannot be) */
	bool metrics_public;     /* --metrics-public */
	int log_min_free_pct;    /* --log-min-free: below this the log store deletes old lines */
	struct store *store;
	/* The audit log as a walk found it just before (the daemon walks it
	 * off the control loop), or NULL: audit-chain walks it here. */
	const struct audit_verdict *audit;
	struct supervisor *sv;
	struct alerts *alerts; /* NULL: no alert engine */
	int64_t now_ms;        /* wall clock, for token expiry */
};

struct doctor_check {
	const char *id; /* static */
	enum doctor_status status;
	char *summary;  /* owned */
	char *hint;     /* owned; what to do (also said when ok, as a reminder) */
};

struct doctor_report {
	struct doctor_check *checks; /* in the order of the check table */
	size_t n;
	int counts[DOCTOR_NSTATUS];
};

/* Runs every check. Release out with doctor_report_release. */
void doctor_run(const struct doctor_input *in, struct doctor_report *out);
/* Runs only the check named id; -ENOENT when there is none. For tests. */
int doctor_run_one(const struct doctor_input *in, const char *id, struct doctor_check *out);
void doctor_report_release(struct doctor_report *r);
void doctor_check_release(struct doctor_check *c);
/* {"checks": [{id, status, summary, hint}], "counts": {ok, warn, fail}};
 * caller frees. */
struct json *doctor_report_json(const struct doctor_report *r);
const char *doctor_status_name(enum doctor_status s);

/* ---- the pure rules, exposed for tests ---- */

/* Free space against the log store's floor: fail below min_free_pct (the
 * store is already deleting logs), warn below twice it, ok otherwise.
 * min_free_pct 0 (no floor): fail only when nothing is free. */
enum doctor_status doctor_disk_status(double free_pct, int min_free_pct);
/* What mode bits say about a path in the data dir: fail when group- or
 * world-writable, warn when private is asked for and group or others have
 * any access, else ok. */
enum doctor_status doctor_mode_status(unsigned mode, bool private);

#endif
