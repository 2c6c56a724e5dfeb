/* cli_audit.c: `paasops audit` lists the audit log (GET /v1/audit) and
 * `paasops audit verify` checks its hash chain (GET /v1/audit/verify);
 * both admin only. */
#include "cli/cli_internal.h"
#include "compat/json.h"
#include "core/strbuf.h"
#include "core/util.h"
#include <stdio.h>
#include <stdlib.h>

const struct cli_opt cli__audit_opts[] = {
	{"app", 0, "APP", false, "only calls about this app"},
	{"limit", 'n', "N", false, "show the newest N entries (default 100, max 10000)"},
	{0},
};

const struct cli_opt cli__audit_verify_opts[] = {
	{"anchor", 0, "SEQ:HASH", false, "also check that entry SEQ still has this hash (a head printed earlier)"},
	{0},
};

static void entry_row(struct cli_table *t, const struct json *e)
{
	int64_t status = 0;
	json_get_int(json_get(e, "status"), &status);
	cli__table_add(t, json_get_str(e, "time"));
	cli__table_add(t, json_get_str(e, "actor"));
	cli__table_add(t, json_get_str(e, "method"));
	cli__table_add(t, json_get_str(e, "path"));
	cli__table_addf(t, "%lld", (long long)status);
	cli__table_add(t, json_get_str(e, "app"));
	cli__table_add(t, json_get_str(e, "detail"));
}

int cli__cmd_audit(struct cli *c)
{
	const char *app = cli__flag(c->inv, "app");
	const char *limit = cli__flag(c->inv, "limit");
	int64_t n;
	if (limit && (cli__parse_count(limit, 10000, &n) < 0 || n == 0))
		return cli__usage_error(c, "invalid --limit '%s': expected a whole number from 1 to 10000",
				       limit);
	struct strbuf path;
	strbuf_init(&path, 64);
	strbuf_adds(&path, "/v1/audit");
	if (app)
		cli__query_add(&path, "app", app);
	if (limit)
		cli__query_add(&path, "limit", limit);
	struct cli_response res;
	int rc = cli__get_or_show(c, path.buf, &res);
	strbuf_release(&path);
	if (rc)
		return rc == CLI_SHOWN ? CLI_EXIT_OK : rc;
	static const char *const headers[] = {"TIME", "ACTOR", "METHOD", "PATH",
					      "STATUS", "APP", "DETAIL"};
	struct cli_table t;
	cli__table_init(&t, headers, ARRAY_SIZE(headers));
	for (const struct json *e = json_first(json_get(res.json, "entries")); e; e = json_next(e))
		entry_row(&t, e);
	if (cli__table_rows(&t) == 0)
		fprintf(c->err, "no audit entries\n");
	else
		cli__table_print(c, &t);
	cli__table_release(&t);
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

/* Exits 1 when the chain is broken or cannot be checked with the daemon's
 * key, with --json too. */
int cli__cmd_audit_verify(struct cli *c)
{
	const char *anchor = cli__flag(c->inv, "anchor");
	struct strbuf path;
	strbuf_init(&path, 0);
	strbuf_adds(&path, "/v1/audit/verify");
	if (anchor)
		cli__query_add(&path, "anchor", anchor);
	c->query_is_usage = true; /* the daemon checks the anchor: its 400 is a bad flag */
	struct cli_response res;
	int rc = cli__call(c, "GET", path.buf, NULL, &res);
	strbuf_release(&path);
	if (rc)
		return rc;
	bool ok = json_true(json_get(res.json, "ok"));
	int64_t entries = 0, at = 0, fresh = 0, from = 0;
	json_get_int(json_get(res.json, "entries"), &entries);
	bool broken = json_get_int(json_get(res.json, "broken_at"), &at) == 0;
	bool has_fresh = json_get_int(json_get(res.json, "new_entries"), &fresh) == 0;
	json_get_int(json_get(json_get(res.json, "unchecked"), "from"), &from);
	char since[64] = "";
	if (has_fresh)
		snprintf(since, sizeof(since), ", %lld new since the last verify", (long long)fresh);
	if (c->inv->json)
		cli__print_json(c, res.json, true);
	else if (ok && entries == 0)
		fprintf(c->out, "audit log intact: 0 entries\n");
	else if (ok)
		fprintf(c->out, "audit log intact: %lld entries%s, head %lld:%s%s\n", (long long)entries, since,
			(long long)entries, cli__jstr(res.json, "head", "-"), anchor ? ", anchor matches" : "");
	else if (broken)
		fprintf(c->err, "audit log BROKEN at entry %lld: %s\n", (long long)at,
			cli__jstr(res.json, "reason", "no reason given"));
	else
		fprintf(c->err, "audit log cannot be checked from entry %lld with this daemon's key: %s\n",
			(long long)from, cli__jstr(res.json, "reason", "no reason given"));
	cli__response_release(&res);
	return ok ? CLI_EXIT_OK : CLI_EXIT_FAILED;
}
