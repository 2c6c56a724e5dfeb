/* test_store.c: the SQLite store (src/store) on a database in a fresh
 * temporary directory per test: migrations, apps and their scale rows,
 * processes, events and tokens, and transactions. */
#include <dirent.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/util.h"
#include "store/store.h"
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

struct fixture {
	char dir[64];
	char *path;
	struct store *st;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/paasops-test-store-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	f->path = xasprintf("%s/state.db", f->dir);
	char *err = NULL;
	f->st = store_open(f->path, &err);
	if (!f->st) {
		fprintf(stderr, "store_open: %s\n", err ? err : "?");
		free(err);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	store_close(f->st);
	/* The database, its journal files and the key the store made. */
	DIR *d = opendir(f->dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char *p = xasprintf("%s/%s", f->dir, e->d_name);
		unlink(p);
		free(p);
	}
	if (d)
		closedir(d);
	assert_int_equal(rmdir(f->dir), 0);
	free(f->path);
	free(f);
	return 0;
}

static struct store *reopen(struct fixture *f)
{
	store_close(f->st);
	char *err = NULL;
	f->st = store_open(f->path, &err);
	if (!f->st)
		fail_msg("re-open failed: %s", err ? err : "?");
	assert_null(err);
	return f->st;
}

/* Collected rows: copies of what the callbacks saw, as one text line each. */
struct rows {
	char *line[64];
	size_t n;
};

static void rows_free(struct rows *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->line[i]);
	r->n = 0;
}

static void rows_add(struct rows *r, char *line)
{
	assert_true(r->n < ARRAY_SIZE(r->line));
	r->line[r->n++] = line;
}

#define S(x) ((x) ? (x) : "NULL")

static void on_app(void *ctx, const struct store_app *a)
{
	rows_add(ctx, xasprintf("%s|%s|%s|%s|%d|%lld|%lld", S(a->name), S(a->spec_yaml),
				S(a->filename), S(a->dir), a->stopped, (long long)a->created_at,
				(long long)a->updated_at));
}

static void on_scale(void *ctx, const struct store_scale *sc)
{
	rows_add(ctx, xasprintf("%s|%s|%d|%d|%d", S(sc->app), S(sc->process), sc->instances,
				sc->spec_instances, sc->stopped));
}

static void on_proc(void *ctx, const struct store_proc *p)
{
	rows_add(ctx, xasprintf("%s|%d|%llu|%s", S(p->instance), p->pid,
				(unsigned long long)p->start_ticks, S(p->cgroup)));
}

static void on_event(void *ctx, const struct store_event *ev)
{
	rows_add(ctx, xasprintf("%lld|%lld|%s|%s|%s|%s|%s|%s|%d|%d|%d", (long long)ev->id,
				(long long)ev->time, S(ev->app), S(ev->process), S(ev->instance),
				S(ev->type), S(ev->state), S(ev->reason), ev->pid, ev->exit_status,
				ev->signal));
}

static void on_token(void *ctx, const struct store_token *t)
{
	rows_add(ctx, xasprintf("%s|%s|%s|%s|%s|%lld|%lld|%lld|%d", S(t->id), S(t->name), S(t->hash),
				S(t->role), S(t->apps), (long long)t->created_at,
				(long long)t->expires_at, (long long)t->last_used_at, t->revoked));
}

/* Sorted process names of app's scale rows, ','-joined; caller frees. */
static char *scale_names(struct store *st, const char *app)
{
	struct rows r = {0};
	assert_int_equal(store_scale_each(st, app, on_scale, &r), 0);
	for (size_t i = 0; i < r.n; i++)
		for (size_t j = i + 1; j < r.n; j++)
			if (strcmp(r.line[j], r.line[i]) < 0) {
				char *t = r.line[i];
				r.line[i] = r.line[j];
				r.line[j] = t;
			}
	struct { char buf[512]; size_t len; } out = {{0}, 0};
	for (size_t i = 0; i < r.n; i++) {
		const char *p = strchr(r.line[i], '|') + 1;
		size_t n = (size_t)(strchr(p, '|') - p);
		out.len += (size_t)snprintf(out.buf + out.len, sizeof(out.buf) - out.len, "%s%.*s",
					    i ? "," : "", (int)n, p);
	}
	rows_free(&r);
	return xstrdup(out.buf);
}

static void put_app(struct store *st, const char *name, int64_t t)
{
	struct store_app a = {.name = name, .spec_yaml = "app: x\n", .filename = "paasops.yaml",
			      .dir = "/srv/x", .created_at = t, .updated_at = t};
	assert_int_equal(store_app_put(st, &a), 0);
}

static void put_scale(struct store *st, const char *app, const char *proc, int n)
{
	struct store_scale sc = {.app = app, .process = proc, .instances = n, .spec_instances = n};
	assert_int_equal(store_scale_put(st, &sc), 0);
}

static int64_t add_event(struct store *st, const char *app, const char *type, int64_t t)
{
	struct store_event ev = {.time = t, .app = app, .type = type, .exit_status = -1};
	ev.id = -1;
	assert_int_equal(store_event_add(st, &ev), 0);
	return ev.id;
}

/* ------------------------------------------------------------ open */

static void test_store__open_creates_and_migrates_a_new_database(void **state)
{
	struct fixture *f = *state;
	struct stat sb;
	assert_int_equal(stat(f->path, &sb), 0);
	/* Every table is there and empty. */
	struct rows r = {0};
	assert_int_equal(store_apps_each(f->st, on_app, &r), 0);
	assert_int_equal(store_procs_each(f->st, on_proc, &r), 0);
	assert_int_equal(store_events_each(f->st, NULL, 0, 100, on_event, &r), 0);
	assert_int_equal(store_tokens_each(f->st, on_token, &r), 0);
	assert_int_equal(store_scale_each(f->st, "x", on_scale, &r), 0);
	assert_int_equal(r.n, 0);
}

static void test_store__reopen_is_idempotent_and_keeps_data(void **state)
{
	struct fixture *f = *state;
	put_app(f->st, "web", 1000);
	put_scale(f->st, "web", "worker", 2);
	int64_t id = add_event(f->st, "web", "apply", 5);
	reopen(f);
	reopen(f);
	struct rows r = {0};
	assert_int_equal(store_apps_each(f->st, on_app, &r), 0);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.line[0], "web|app: x\n|paasops.yaml|/srv/x|0|1000|1000");
	rows_free(&r);
	char *names = scale_names(f->st, "web");
	assert_string_equal(names, "worker");
	free(names);
	/* Event ids keep increasing across re-opens. */
	assert_true(add_event(f->st, "web", "apply", 6) > id);
}

static void test_store__open_refuses_an_unusable_path(void **state)
{
	struct fixture *f = *state;
	char *bad = xasprintf("%s/no/such/dir/state.db", f->dir);
	char *err = NULL;
	assert_null(store_open(bad, &err));
	assert_non_null(err);
	assert_non_null(strstr(err, bad));
	free(err);
	free(bad);

	/* A file that is not a database. */
	char *junk = xasprintf("%s/junk.db", f->dir);
	FILE *fp = fopen(junk, "w");
	assert_non_null(fp);
	for (int i = 0; i < 200; i++)
		fputs("this is not an SQLite database at all. ", fp);
	fclose(fp);
	err = NULL;
	assert_null(store_open(junk, &err));
	assert_non_null(err);
	free(err);
	unlink(junk);
	free(junk);
}

/* ------------------------------------------------------------ apps */

static void test_store__apps_put_each_in_name_order(void **state)
{
	struct fixture *f = *state;
	put_app(f->st, "zeta", 1);
	put_app(f->st, "alpha", 2);
	struct store_app m = {.name = "mid", .spec_yaml = "y", .filename = NULL, .dir = "/d",
			      .stopped = true, .created_at = 3, .updated_at = 4};
	assert_int_equal(store_app_put(f->st, &m), 0);
	struct rows r = {0};
	assert_int_equal(store_apps_each(f->st, on_app, &r), 0);
	assert_int_equal(r.n, 3);
	assert_string_equal(r.line[0], "alpha|app: x\n|paasops.yaml|/srv/x|0|2|2");
	assert_string_equal(r.line[1], "mid|y|NULL|/d|1|3|4");
	assert_string_equal(r.line[2], "zeta|app: x\n|paasops.yaml|/srv/x|0|1|1");
	rows_free(&r);
}

static void test_store__app_put_upserts_and_keeps_created_at(void **state)
{
	struct fixture *f = *state;
	put_app(f->st, "web", 100);
	struct store_app a = {.name = "web", .spec_yaml = "v2", .filename = "other.yaml",
			      .dir = "/new", .stopped = true, .created_at = 999, .updated_at = 200};
	assert_int_equal(store_app_put(f->st, &a), 0);
	struct rows r = {0};
	assert_int_equal(store_apps_each(f->st, on_app, &r), 0);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.line[0], "web|v2|other.yaml|/new|1|100|200");
	rows_free(&r);

	assert_int_equal(store_app_set_stopped(f->st, "web", false), 0);
	assert_int_equal(store_apps_each(f->st, on_app, &r), 0);
	assert_string_equal(r.line[0], "web|v2|other.yaml|/new|0|100|200");
	rows_free(&r);
}

static void test_store__app_delete_removes_its_scale_rows(void **state)
{
	struct fixture *f = *state;
	put_app(f->st, "web", 1);
	put_app(f->st, "api", 1);
	put_scale(f->st, "web", "web", 2);
	put_scale(f->st, "web", "worker", 1);
	put_scale(f->st, "api", "web", 3);
	assert_int_equal(store_app_delete(f->st, "web"), 0);
	struct rows r = {0};
	assert_int_equal(store_apps_each(f->st, on_app, &r), 0);
	assert_int_equal(r.n, 1);
	assert_true(str_starts_with(r.line[0], "api|"));
	rows_free(&r);
	char *names = scale_names(f->st, "web");
	assert_string_equal(names, "");
	free(names);
	names = scale_names(f->st, "api");
	assert_string_equal(names, "web");
	free(names);
	/* Deleting what is not there is not an error. */
	assert_int_equal(store_app_delete(f->st, "web"), 0);
}

/* ------------------------------------------------------------ autoscale */

static void on_autoscale(void *ctx, const struct store_autoscale *a)
{
	struct rows *r = ctx;
	assert_true(r->n < ARRAY_SIZE(r->line));
	r->line[r->n++] = xasprintf("%s.%s|%lld|%lld|%d|%d|%lld|%lld", a->app, a->process,
				    (long long)a->last_scaled_at, (long long)a->down_since,
				    a->down_from, a->down_to, (long long)a->panic_since,
				    (long long)a->calm_since);
}

static void test_store__autoscale_rows_upsert_survive_reopen_and_go_with_their_app(void **state)
{
	struct fixture *f = *state;
	put_app(f->st, "web", 1);
	put_app(f->st, "api", 1);
	struct store_autoscale a = {.app = "web", .process = "web", .last_scaled_at = 1000,
				    .down_since = 2000, .down_from = 4, .down_to = 2};
	assert_int_equal(store_autoscale_put(f->st, &a), 0);
	a.down_since = 0;
	a.panic_since = 3000;
	a.calm_since = 3500;
	assert_int_equal(store_autoscale_put(f->st, &a), 0); /* the same row, replaced */
	a.process = "worker";
	assert_int_equal(store_autoscale_put(f->st, &a), 0);
	a.app = "api";
	a.process = "web";
	assert_int_equal(store_autoscale_put(f->st, &a), 0);
	reopen(f);
	struct rows r = {0};
	assert_int_equal(store_autoscale_each(f->st, on_autoscale, &r), 0);
	assert_int_equal(r.n, 3);
	assert_string_equal(r.line[0], "api.web|1000|0|4|2|3000|3500");
	assert_string_equal(r.line[1], "web.web|1000|0|4|2|3000|3500");
	assert_string_equal(r.line[2], "web.worker|1000|0|4|2|3000|3500");
	rows_free(&r);
	/* One process type, then a whole app. */
	assert_int_equal(store_autoscale_delete(f->st, "web", "worker"), 0);
	assert_int_equal(store_app_delete(f->st, "api"), 0);
	assert_int_equal(store_autoscale_each(f->st, on_autoscale, &r), 0);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.line[0], "web.web|1000|0|4|2|3000|3500");
	rows_free(&r);
	assert_int_equal(store_autoscale_delete(f->st, "nope", NULL), 0);
}

/* ------------------------------------------------------------ scale */

static void test_store__scale_put_upserts_per_app_and_process(void **state)
{
	struct fixture *f = *state;
	put_scale(f->st, "web", "web", 2);
	struct store_scale sc = {.app = "web", .process = "web", .instances = 5, .spec_instances = 2,
				 .stopped = true};
	assert_int_equal(store_scale_put(f->st, &sc), 0);
	put_scale(f->st, "other", "web", 9);
	struct rows r = {0};
	assert_int_equal(store_scale_each(f->st, "web", on_scale, &r), 0);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.line[0], "web|web|5|2|1");
	rows_free(&r);
	assert_int_equal(store_scale_each(f->st, "nobody", on_scale, &r), 0);
	assert_int_equal(r.n, 0);
}

static void test_store__scale_prune_keeps_only_the_named_processes(void **state)
{
	struct fixture *f = *state;
	put_scale(f->st, "web", "web", 1);
	put_scale(f->st, "web", "worker", 1);
	put_scale(f->st, "web", "clock", 1);
	put_scale(f->st, "api", "worker", 1);
	static const char *const keep[] = {"web", "clock", "absent"};
	assert_int_equal(store_scale_prune(f->st, "web", keep, 3), 0);
	char *names = scale_names(f->st, "web");
	assert_string_equal(names, "clock,web");
	free(names);
	names = scale_names(f->st, "api");
	assert_string_equal(names, "worker"); /* other apps untouched */
	free(names);
	/* Keeping nothing removes everything of that app. */
	assert_int_equal(store_scale_prune(f->st, "web", NULL, 0), 0);
	names = scale_names(f->st, "web");
	assert_string_equal(names, "");
	free(names);
	names = scale_names(f->st, "api");
	assert_string_equal(names, "worker");
	free(names);
}

/* ------------------------------------------------------------ procs */

static void test_store__procs_put_each_delete(void **state)
{
	struct fixture *f = *state;
	struct store_proc a = {.instance = "web.1", .pid = 100, .start_ticks = 123456789012ULL,
			       .cgroup = "/sys/fs/cgroup/a:/sys/fs/cgroup/b"};
	struct store_proc b = {.instance = "web.2", .pid = 200, .start_ticks = 5, .cgroup = NULL};
	assert_int_equal(store_proc_put(f->st, &a), 0);
	assert_int_equal(store_proc_put(f->st, &b), 0);
	struct rows r = {0};
	assert_int_equal(store_procs_each(f->st, on_proc, &r), 0);
	assert_int_equal(r.n, 2);
	assert_string_equal(r.line[0], "web.1|100|123456789012|/sys/fs/cgroup/a:/sys/fs/cgroup/b");
	assert_string_equal(r.line[1], "web.2|200|5|NULL");
	rows_free(&r);

	/* A pid is one row: putting it again replaces it. */
	struct store_proc a2 = {.instance = "web.9", .pid = 100, .start_ticks = 7, .cgroup = "c"};
	assert_int_equal(store_proc_put(f->st, &a2), 0);
	assert_int_equal(store_proc_delete(f->st, 200), 0);
	assert_int_equal(store_proc_delete(f->st, 999), 0);
	assert_int_equal(store_procs_each(f->st, on_proc, &r), 0);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.line[0], "web.9|100|7|c");
	rows_free(&r);
}

/* ------------------------------------------------------------ events */

static void test_store__event_add_assigns_increasing_ids_and_keeps_fields(void **state)
{
	struct fixture *f = *state;
	struct store_event ev = {.time = 1700000000000LL, .app = "web", .process = "web",
				 .instance = "web.1", .type = "state", .state = "running",
				 .reason = "started", .pid = 4242, .exit_status = 3, .signal = 9};
	assert_int_equal(store_event_add(f->st, &ev), 0);
	int64_t first = ev.id;
	assert_true(first > 0);
	int64_t prev = first;
	for (int i = 0; i < 5; i++) {
		int64_t id = add_event(f->st, "web", "apply", i);
		assert_true(id > prev);
		prev = id;
	}
	struct rows r = {0};
	assert_int_equal(store_events_each(f->st, NULL, 0, 1, on_event, &r), 0);
	rows_free(&r);
	assert_int_equal(store_events_each(f->st, "web", first - 1, 1000, on_event, &r), 0);
	assert_int_equal(r.n, 6);
	char *want = xasprintf("%lld|1700000000000|web|web|web.1|state|running|started|4242|3|9",
			       (long long)first);
	assert_string_equal(r.line[0], want);
	free(want);
	/* Unset fields come back as NULL / none. */
	want = xasprintf("%lld|0|web|NULL|NULL|apply|NULL|NULL|0|-1|0", (long long)first + 1);
	assert_string_equal(r.line[1], want);
	free(want);
	rows_free(&r);
}

static void test_store__events_query_returns_the_newest_limit_oldest_first(void **state)
{
	struct fixture *f = *state;
	int64_t web_ids[10];
	int nw = 0;
	for (int i = 0; i < 20; i++) {
		const char *app = i % 2 ? "web" : "api";
		int64_t id = add_event(f->st, app, "apply", 1000 + i);
		if (i % 2)
			web_ids[nw++] = id;
	}
	/* The newest 3 of web's 10, in ascending order. */
	struct rows r = {0};
	assert_int_equal(store_events_each(f->st, "web", 0, 3, on_event, &r), 0);
	assert_int_equal(r.n, 3);
	for (int k = 0; k < 3; k++) {
		long long id = strtoll(r.line[k], NULL, 10);
		assert_int_equal(id, web_ids[7 + k]);
		assert_non_null(strstr(r.line[k], "|web|"));
	}
	rows_free(&r);

	/* after: only ids greater than it; with a roomy limit, all of them. */
	assert_int_equal(store_events_each(f->st, "web", web_ids[5], 100, on_event, &r), 0);
	assert_int_equal(r.n, 4);
	for (int k = 0; k < 4; k++)
		assert_int_equal(strtoll(r.line[k], NULL, 10), web_ids[6 + k]);
	rows_free(&r);

	/* after and limit together: still the newest, ascending. */
	assert_int_equal(store_events_each(f->st, "web", web_ids[2], 2, on_event, &r), 0);
	assert_int_equal(r.n, 2);
	assert_int_equal(strtoll(r.line[0], NULL, 10), web_ids[8]);
	assert_int_equal(strtoll(r.line[1], NULL, 10), web_ids[9]);
	rows_free(&r);

	/* No app: every app's events. */
	assert_int_equal(store_events_each(f->st, NULL, 0, 100, on_event, &r), 0);
	assert_int_equal(r.n, 20);
	for (size_t k = 1; k < r.n; k++)
		assert_true(strtoll(r.line[k], NULL, 10) > strtoll(r.line[k - 1], NULL, 10));
	rows_free(&r);

	/* Nothing newer than the newest; an unknown app has none. */
	assert_int_equal(store_events_each(f->st, "web", web_ids[9], 100, on_event, &r), 0);
	assert_int_equal(r.n, 0);
	assert_int_equal(store_events_each(f->st, "nope", 0, 100, on_event, &r), 0);
	assert_int_equal(r.n, 0);
}

static void count_event(void *ctx, const struct store_event *ev)
{
	int64_t *c = ctx;
	if (c[0] == 0 || ev->id < c[1])
		c[1] = ev->id; /* oldest id seen */
	c[0]++;
}

static void test_store__events_are_trimmed_to_the_newest_100000(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(store_begin(f->st), 0);
	int64_t first = 0, last = 0;
	for (int i = 0; i < 101000; i++) {
		struct store_event ev = {.time = i, .app = "web", .type = "state", .exit_status = -1};
		assert_int_equal(store_event_add(f->st, &ev), 0);
		if (i == 0)
			first = ev.id;
		last = ev.id;
	}
	assert_int_equal(store_commit(f->st), 0);
	assert_int_equal(last - first, 100999);
	int64_t c[2] = {0, 0};
	assert_int_equal(store_events_each(f->st, NULL, 0, 1000000, count_event, c), 0);
	assert_int_equal(c[0], 100000);
	assert_int_equal(c[1], last - 99999);
}

/* ------------------------------------------------------------ tokens */

static void add_token(struct store *st, const char *id, const char *hash, int64_t created)
{
	struct store_token t = {.id = id, .name = "ci", .hash = hash, .role = "deployer",
				.apps = "[\"web\"]", .created_at = created, .expires_at = 0};
	assert_int_equal(store_token_add(st, &t), 0);
}

static void test_store__tokens_add_and_find_by_hash(void **state)
{
	struct fixture *f = *state;
	add_token(f->st, "tok_1", "hash-one", 10);
	struct store_token t2 = {.id = "tok_2", .name = NULL, .hash = "hash-two", .role = "admin",
				 .apps = "[]", .created_at = 20, .expires_at = 5000};
	assert_int_equal(store_token_add(f->st, &t2), 0);

	struct rows r = {0};
	assert_int_equal(store_token_by_hash(f->st, "hash-two", on_token, &r), 0);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.line[0], "tok_2|NULL|hash-two|admin|[]|20|5000|0|0");
	rows_free(&r);

	assert_int_equal(store_token_by_hash(f->st, "no-such-hash", on_token, &r), -ENOENT);
	assert_int_equal(r.n, 0);
	assert_int_equal(store_token_by_hash(f->st, "HASH-ONE", on_token, &r), -ENOENT);
	assert_int_equal(r.n, 0);
}

static void test_store__token_ids_and_hashes_are_unique(void **state)
{
	struct fixture *f = *state;
	add_token(f->st, "tok_1", "hash-one", 10);
	struct store_token same_id = {.id = "tok_1", .hash = "other", .role = "viewer",
				      .apps = "[]", .created_at = 11};
	assert_true(store_token_add(f->st, &same_id) < 0);
	struct store_token same_hash = {.id = "tok_9", .hash = "hash-one", .role = "viewer",
					.apps = "[]", .created_at = 11};
	assert_true(store_token_add(f->st, &same_hash) < 0);
	struct rows r = {0};
	assert_int_equal(store_tokens_each(f->st, on_token, &r), 0);
	assert_int_equal(r.n, 1);
	rows_free(&r);
}

static void test_store__tokens_each_in_creation_order(void **state)
{
	struct fixture *f = *state;
	add_token(f->st, "tok_c", "h3", 30);
	add_token(f->st, "tok_a", "h1", 10);
	add_token(f->st, "tok_b", "h2", 20);
	struct rows r = {0};
	assert_int_equal(store_tokens_each(f->st, on_token, &r), 0);
	assert_int_equal(r.n, 3);
	assert_true(str_starts_with(r.line[0], "tok_a|"));
	assert_true(str_starts_with(r.line[1], "tok_b|"));
	assert_true(str_starts_with(r.line[2], "tok_c|"));
	rows_free(&r);
}

static void test_store__token_revoke_and_touch(void **state)
{
	struct fixture *f = *state;
	add_token(f->st, "tok_1", "hash-one", 10);
	add_token(f->st, "tok_2", "hash-two", 20);
	assert_int_equal(store_token_revoke(f->st, "tok_1"), 0);
	assert_int_equal(store_token_revoke(f->st, "tok_nope"), -ENOENT);
	assert_int_equal(store_token_touch(f->st, "tok_2", 12345), 0);

	struct rows r = {0};
	assert_int_equal(store_token_by_hash(f->st, "hash-one", on_token, &r), 0);
	assert_string_equal(r.line[0], "tok_1|ci|hash-one|deployer|[\"web\"]|10|0|0|1");
	rows_free(&r);
	assert_int_equal(store_token_by_hash(f->st, "hash-two", on_token, &r), 0);
	assert_string_equal(r.line[0], "tok_2|ci|hash-two|deployer|[\"web\"]|20|0|12345|0");
	rows_free(&r);
	/* Revoking twice still finds the token. */
	assert_int_equal(store_token_revoke(f->st, "tok_1"), 0);
}

/* ------------------------------------------------------------ transactions */

static void test_store__rollback_leaves_no_change(void **state)
{
	struct fixture *f = *state;
	put_app(f->st, "keep", 1);
	assert_int_equal(store_begin(f->st), 0);
	put_app(f->st, "gone", 2);
	put_scale(f->st, "gone", "web", 1);
	assert_int_equal(store_app_delete(f->st, "keep"), 0);
	add_token(f->st, "tok_x", "hx", 1);
	store_rollback(f->st);

	struct rows r = {0};
	assert_int_equal(store_apps_each(f->st, on_app, &r), 0);
	assert_int_equal(r.n, 1);
	assert_true(str_starts_with(r.line[0], "keep|"));
	rows_free(&r);
	char *names = scale_names(f->st, "gone");
	assert_string_equal(names, "");
	free(names);
	assert_int_equal(store_tokens_each(f->st, on_token, &r), 0);
	assert_int_equal(r.n, 0);
}

static void test_store__commit_keeps_changes_across_reopen(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(store_begin(f->st), 0);
	put_app(f->st, "web", 1);
	put_scale(f->st, "web", "web", 2);
	assert_int_equal(store_commit(f->st), 0);
	reopen(f);
	char *names = scale_names(f->st, "web");
	assert_string_equal(names, "web");
	free(names);
}

static void count_audit(void *ctx, const struct store_audit *e)
{
	(*(int *)ctx)++;
}

static void count_keys(void *ctx, const struct store_audit_key *k)
{
	(*(int *)ctx)++;
}

static int add_audit(struct store *st, int64_t seq)
{
	struct store_audit e = {.seq = seq, .time = 1, .actor = "local", .role = "admin",
				.method = "POST", .path = "/v1/apps", .status = 201, .remote = "unix",
				.prev = "p", .hash = "h"};
	return store_audit_add(st, &e);
}

static void test_store__reader_sees_a_snapshot_beside_the_writer_and_cannot_write(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(store_opened_version(f->st), 0); /* a new database */
	assert_int_equal(add_audit(f->st, 1), 0);
	char *err = NULL;
	struct store *r = store_open_reader(f->st, &err);
	assert_non_null(r);
	assert_int_equal(store_begin_read(r), 0);
	int n = 0;
	assert_int_equal(store_audit_each(r, NULL, 0, -1, count_audit, &n), 0);
	assert_int_equal(n, 1);
	/* The writer goes on; the reader's transaction keeps its snapshot. */
	assert_int_equal(add_audit(f->st, 2), 0);
	n = 0;
	assert_int_equal(store_audit_each(r, NULL, 0, -1, count_audit, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(store_commit(r), 0);
	n = 0;
	assert_int_equal(store_audit_each(r, NULL, 0, -1, count_audit, &n), 0);
	assert_int_equal(n, 2);
	assert_int_not_equal(add_audit(r, 3), 0);
	/* Keys derive the same on both, differently per purpose. */
	unsigned char a[CRYPTO_KEY_BYTES], b[CRYPTO_KEY_BYTES], c[CRYPTO_KEY_BYTES];
	store_key_derive(f->st, "one", a);
	store_key_derive(r, "one", b);
	store_key_derive(f->st, "two", c);
	assert_memory_equal(a, b, sizeof(a));
	assert_memory_not_equal(a, c, sizeof(a));
	store_close(r);

	/* Reopened, the database was already at the newest version. */
	store_close(f->st);
	f->st = store_open(f->path, &err);
	assert_non_null(f->st);
	assert_true(store_opened_version(f->st) > 0);
}

static void test_store__audit_keys_list_in_the_order_added(void **state)
{
	struct fixture *f = *state;
	struct store_audit_key k = {.from_seq = 1, .keyed_from = 1, .key_id = "k1", .mac = "m1"};
	assert_int_equal(store_audit_key_add(f->st, &k), 0);
	k.from_seq = 5;
	k.key_id = "k2";
	assert_int_equal(store_audit_key_add(f->st, &k), 0);
	k.key_id = "k3"; /* the same from_seq again: kept, in order */
	assert_int_equal(store_audit_key_add(f->st, &k), 0);
	int n = 0;
	assert_int_equal(store_audit_keys_each(f->st, count_keys, &n), 0);
	assert_int_equal(n, 3);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_store__open_creates_and_migrates_a_new_database),
		T(test_store__reopen_is_idempotent_and_keeps_data),
		T(test_store__open_refuses_an_unusable_path),
		T(test_store__apps_put_each_in_name_order),
		T(test_store__app_put_upserts_and_keeps_created_at),
		T(test_store__app_delete_removes_its_scale_rows),
		T(test_store__autoscale_rows_upsert_survive_reopen_and_go_with_their_app),
		T(test_store__scale_put_upserts_per_app_and_process),
		T(test_store__scale_prune_keeps_only_the_named_processes),
		T(test_store__procs_put_each_delete),
		T(test_store__event_add_assigns_increasing_ids_and_keeps_fields),
		T(test_store__events_query_returns_the_newest_limit_oldest_first),
		T(test_store__events_are_trimmed_to_the_newest_100000),
		T(test_store__tokens_add_and_find_by_hash),
		T(test_store__token_ids_and_hashes_are_unique),
		T(test_store__tokens_each_in_creation_order),
		T(test_store__token_revoke_and_touch),
		T(test_store__rollback_leaves_no_change),
		T(test_store__commit_keeps_changes_across_reopen),
		T(test_store__reader_sees_a_snapshot_beside_the_writer_and_cannot_write),
		T(test_store__audit_keys_list_in_the_order_added),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
