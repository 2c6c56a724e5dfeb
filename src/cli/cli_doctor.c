/* cli_doctor.c: `paasops doctor` prints the daemon's posture report (GET
 * /v1/doctor, admin only): a table of every check, then what to do about
 * each one that is not ok. Exits 1 when a check fails, also with --json, so
 * that a cron job or CI step can gate on it; warnings alone exit 0. */
#include "cli/cli_internal.h"
#include "compat/json.h"
#include "core/util.h"
#include <stdio.h>
#include <string.h>

int cli__cmd_doctor(struct cli *c)
{
	struct cli_response res;
	int rc = cli__call(c, "GET", "/v1/doctor", NULL, &res);
	if (rc)
		return rc;
	int64_t fails = 0, warns = 0, oks = 0;
	const struct json *counts = json_get(res.json, "counts");
	json_get_int(json_get(counts, "fail"), &fails);
	json_get_int(json_get(counts, "warn"), &warns);
	json_get_int(json_get(counts, "ok"), &oks);
	const struct json *checks = json_get(res.json, "checks");
	if (c->inv->json) {
		cli__print_json(c, res.json, true);
	} else {
		static const char *const headers[] = {"STATUS", "CHECK", "SUMMARY"};
		struct cli_table t;
		cli__table_init(&t, headers, ARRAY_SIZE(headers));
		for (const struct json *k = json_first(checks); k; k = json_next(k)) {
			cli__table_add(&t, json_get_str(k, "status"));
			cli__table_add(&t, json_get_str(k, "id"));
			cli__table_add(&t, json_get_str(k, "summary"));
		}
		cli__table_print(c, &t);
		cli__table_release(&t);
		/* What to do, worst first, for the checks that are not ok. */
		static const char *const order[] = {"fail", "warn"};
		bool first = true;
		for (size_t o = 0; o < ARRAY_SIZE(order); o++)
			for (const struct json *k = json_first(checks); k; k = json_next(k)) {
				if (!str_eq(json_get_str(k, "status"), order[o]))
					continue;
				if (first)
					fputc('\n', c->out);
				first = false;
				fprintf(c->out, "%s %s: %s\n", order[o], cli__jstr(k, "id", "?"),
					cli__jstr(k, "hint", "-"));
			}
		fprintf(c->out, "\n%lld ok, %lld warn, %lld fail\n", (long long)oks, (long long)warns,
			(long long)fails);
	}
	cli__response_release(&res);
	return fails ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}
