/* cli_drains.c: `paasops drains`: list, add and remove an app's log drains
 * (GET/POST/DELETE /v1/apps/NAME/log-drains). */
#include "cli/cli_internal.h"
#include "compat/http.h"
#include "compat/json.h"
#include "core/util.h"
#include <stdio.h>
#include <stdlib.h>

static void drain_row(struct cli_table *t, const struct json *d)
{
	int64_t id = 0, sent = 0, failed = 0, dropped = 0, queued = 0;
	json_get_int(json_get(d, "id"), &id);
	json_get_int(json_get(d, "sent"), &sent);
	json_get_int(json_get(d, "failed"), &failed);
	json_get_int(json_get(d, "dropped"), &dropped);
	json_get_int(json_get(d, "queued"), &queued);
	cli__table_addf(t, "%lld", (long long)id);
	cli__table_add(t, json_get_str(d, "app") ? json_get_str(d, "app") : "(all apps)");
	cli__table_add(t, cli__jstr(d, "url", "?"));
	cli__table_add(t, cli__jstr(d, "state", "?"));
	cli__table_addf(t, "%lld", (long long)sent);
	cli__table_addf(t, "%lld", (long long)failed);
	cli__table_addf(t, "%lld", (long long)dropped);
	cli__table_addf(t, "%lld", (long long)queued);
	cli__table_add(t, cli__jstr(d, "last_error", ""));
}

int cli__cmd_drains(struct cli *c)
{
	char *path = cli__app_path(c->inv->pos[0], "/log-drains");
	struct cli_response res;
	int rc = cli__get_or_show(c, path, &res);
	free(path);
	if (rc)
		return rc == CLI_SHOWN ? CLI_EXIT_OK : rc;
	static const char *const headers[] = {"ID", "APP", "URL", "STATE", "SENT", "FAILED",
					      "DROPPED", "QUEUED", "LAST ERROR"};
	struct cli_table t;
	cli__table_init(&t, headers, ARRAY_SIZE(headers));
	for (const struct json *d = json_first(json_get(res.json, "drains")); d; d = json_next(d))
		drain_row(&t, d);
	if (cli__table_rows(&t) == 0) {
		fprintf(c->err, "app '%s' has no log drains: add one with 'paasops drains add %s URL'\n",
			c->inv->pos[0], c->inv->pos[0]);
	} else {
		cli__table_print(c, &t);
	}
	cli__table_release(&t);
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

int cli__cmd_drains_add(struct cli *c)
{
	char *path = cli__app_path(c->inv->pos[0], "/log-drains");
	struct json *body = json_object();
	json_set_str(body, "url", c->inv->pos[1]);
	struct cli_response res;
	int rc = cli__call(c, "POST", path, body, &res);
	json_free(body);
	free(path);
	if (rc)
		return rc;
	if (c->inv->json) {
		cli__print_json(c, res.json, true);
	} else {
		int64_t id = 0;
		json_get_int(json_get(res.json, "id"), &id);
		fprintf(c->out, "added drain %lld of app '%s': %s\n", (long long)id, c->inv->pos[0],
			cli__jstr(res.json, "url", c->inv->pos[1]));
	}
	cli__response_release(&res);
	return CLI_EXIT_OK;
}

int cli__cmd_drains_remove(struct cli *c)
{
	char *enc = http_url_encode(c->inv->pos[1]);
	char *suffix = xasprintf("/log-drains/%s", enc);
	char *path = cli__app_path(c->inv->pos[0], suffix);
	free(enc);
	free(suffix);
	struct cli_response res;
	int rc = cli__call(c, "DELETE", path, NULL, &res);
	free(path);
	if (rc)
		return rc;
	if (c->inv->json)
		cli__print_json(c, res.json, true);
	else
		fprintf(c->out, "removed drain %s of app '%s'\n", c->inv->pos[1], c->inv->pos[0]);
	cli__response_release(&res);
	return CLI_EXIT_OK;
}
