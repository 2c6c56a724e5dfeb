/* cli_args.c: turns argv into a struct cli_invocation using the command
 * table, and parses the argument forms commands share (`web=3`, counts).
 * Pure functions: no I/O, so tests/unit/test_cli.c drives them directly. */
#include "cli/cli_internal.h"
#include "compat/json.h"
#include "core/util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

const struct cli_opt cli_global_opts[] = {
	{"server", 0, "ADDR", false, "daemon address: unix:/path/to.sock or http(s)://HOST:PORT"},
	{"token", 0, "TOKEN", false, "bearer token for the API"},
	{"cacert", 0, "FILE", false, "trust the CA (or self-signed certificate) in FILE for https"},
	{"json", 0, NULL, false, "print the server's JSON instead of tables"},
	{"help", 'h', NULL, false, "show help for paasops or a command"},
	{NULL, 0, NULL, false, NULL},
};

/* ------------------------------------------------------------------------ */
/* Flag lookup                                                              */

static const struct cli_opt *opt_find_long(const struct cli_opt *opts, const char *name,
					   size_t len)
{
	for (; opts && opts->name; opts++)
		if (strlen(opts->name) == len && strncmp(opts->name, name, len) == 0)
			return opts;
	return NULL;
}

static const struct cli_opt *opt_find_short(const struct cli_opt *opts, char c)
{
	for (; opts && opts->name; opts++)
		if (opts->short_name && opts->short_name == c)
			return opts;
	return NULL;
}

/* Suggests "--name" among the flags the command accepts; NULL if none is
 * close. The result is borrowed from the tables. */
static const char *opt_suggest(const struct cli_command *cmd, const char *word)
{
	const char *names[64];
	size_t n = 0;
	for (const struct cli_opt *o = cli_global_opts; o->name && n < ARRAY_SIZE(names); o++)
		names[n++] = o->name;
	for (const struct cli_opt *o = cmd ? cmd->opts : NULL; o && o->name && n < ARRAY_SIZE(names);
	     o++)
		names[n++] = o->name;
	return str_suggest(word, names, n);
}

/* Records a parsed flag: globals go to their fields, command flags to vals. */
static void record(struct cli_invocation *inv, const struct cli_opt *opt, const char *value)
{
	bool global = false;
	for (size_t i = 0; i < ARRAY_SIZE(cli_global_opts); i++)
		global = global || opt == &cli_global_opts[i];
	if (global) {
		if (str_eq(opt->name, "server"))
			inv->server = value;
		else if (str_eq(opt->name, "token"))
			inv->token = value;
		else if (str_eq(opt->name, "cacert"))
			inv->cacert = value;
		else if (str_eq(opt->name, "json"))
			inv->json = true;
		else
			inv->help = true;
		return;
	}
	inv->vals = xgrow(inv->vals, sizeof(*inv->vals), inv->n_vals + 1, &inv->alloc_vals);
	inv->vals[inv->n_vals].opt = opt;
	inv->vals[inv->n_vals].value = value;
	inv->n_vals++;
}

static const char *cmd_label(const struct cli_command *cmd)
{
	return cmd ? cmd->name : "paasops";
}

/* "--name", "--name=value", "--name value". *i is advanced past a
 * separate value. */
static int parse_long(struct cli_invocation *inv, int argc, char **argv, int *i, char **err)
{
	const char *arg = argv[*i] + 2;
	const char *eq = strchr(arg, '=');
	size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
	const struct cli_opt *opt = opt_find_long(cli_global_opts, arg, len);
	if (!opt && inv->cmd)
		opt = opt_find_long(inv->cmd->opts, arg, len);
	if (!opt) {
		char *name = xstrndup(arg, len);
		const char *hint = opt_suggest(inv->cmd, name);
		*err = hint ? xasprintf("unknown flag '--%s' for '%s' (did you mean '--%s'?)", name,
					cmd_label(inv->cmd), hint)
			    : xasprintf("unknown flag '--%s' for '%s'", name, cmd_label(inv->cmd));
		free(name);
		return -EINVAL;
	}
	if (!opt->metavar) {
		if (eq) {
			*err = xasprintf("flag '--%s' does not take a value", opt->name);
			return -EINVAL;
		}
		record(inv, opt, NULL);
		return 0;
	}
	if (eq) {
		record(inv, opt, eq + 1);
		return 0;
	}
	if (*i + 1 >= argc) {
		*err = xasprintf("flag '--%s' needs a value (%s)", opt->name, opt->metavar);
		return -EINVAL;
	}
	record(inv, opt, argv[++*i]);
	return 0;
}

/* "-f", "-fy" (switches clustered), "-n 20", "-n20", "-fn 20". */
static int parse_short(struct cli_invocation *inv, int argc, char **argv, int *i, char **err)
{
	const char *arg = argv[*i];
	for (size_t k = 1; arg[k]; k++) {
		const struct cli_opt *opt = opt_find_short(cli_global_opts, arg[k]);
		if (!opt && inv->cmd)
			opt = opt_find_short(inv->cmd->opts, arg[k]);
		if (!opt) {
			*err = xasprintf("unknown flag '-%c' for '%s'", arg[k], cmd_label(inv->cmd));
			return -EINVAL;
		}
		if (!opt->metavar) {
			record(inv, opt, NULL);
			continue;
		}
		if (arg[k + 1]) {
			record(inv, opt, arg + k + 1);
			return 0;
		}
		if (*i + 1 >= argc) {
			*err = xasprintf("flag '-%c' needs a value (%s)", arg[k], opt->metavar);
			return -EINVAL;
		}
		record(inv, opt, argv[++*i]);
		return 0;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Command lookup                                                           */

static bool is_group(const struct cli_command *cmds, size_t n, const char *word)
{
	size_t len = strlen(word);
	for (size_t i = 0; i < n; i++)
		if (strncmp(cmds[i].name, word, len) == 0 && cmds[i].name[len] == ' ')
			return true;
	return false;
}

static const struct cli_command *cmd_find(const struct cli_command *cmds, size_t n,
					  const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(cmds[i].name, name) == 0)
			return &cmds[i];
	return NULL;
}

/* Top-level words ("ps", "tokens") for suggestions; returns how many. */
static size_t top_words(const struct cli_command *cmds, size_t n, char **out, size_t max)
{
	size_t k = 0;
	for (size_t i = 0; i < n && k < max; i++) {
		const char *sp = strchr(cmds[i].name, ' ');
		char *w = sp ? xstrndup(cmds[i].name, (size_t)(sp - cmds[i].name))
			     : xstrdup(cmds[i].name);
		bool dup = false;
		for (size_t j = 0; j < k; j++)
			dup = dup || strcmp(out[j], w) == 0;
		if (dup)
			free(w);
		else
			out[k++] = w;
	}
	return k;
}

static char *unknown_command(const struct cli_command *cmds, size_t n, const char *word)
{
	char *words[64];
	size_t k = top_words(cmds, n, words, ARRAY_SIZE(words));
	const char *hint = str_suggest(word, (const char *const *)words, k);
	char *msg = hint ? xasprintf("unknown command '%s' (did you mean '%s'?)", word, hint)
			 : xasprintf("unknown command '%s'", word);
	for (size_t j = 0; j < k; j++)
		free(words[j]);
	return msg;
}

/* "create, list, revoke" for the group's subcommands; caller frees. */
static char *group_subcommands(const struct cli_command *cmds, size_t n, const char *group)
{
	struct strbuf sb;
	strbuf_init(&sb, 0);
	size_t len = strlen(group);
	for (size_t i = 0; i < n; i++) {
		if (strncmp(cmds[i].name, group, len) || cmds[i].name[len] != ' ')
			continue;
		strbuf_addf(&sb, "%s%s", sb.len ? ", " : "", cmds[i].name + len + 1);
	}
	return strbuf_detach(&sb, NULL);
}

/* A word can be both a command and a group (`deploy DIR` beside
 * `deploy status APP`): once what follows it is not a subcommand (a flag,
 * another word, or nothing), it is the command. Returns whether it was. */
static bool group_as_command(struct cli_invocation *inv, const struct cli_command *cmds, size_t n)
{
	const struct cli_command *cmd = inv->group && !inv->cmd ? cmd_find(cmds, n, inv->group) : NULL;
	if (!cmd)
		return false;
	inv->cmd = cmd;
	inv->group = NULL;
	return true;
}

/* Handles a word that is not a flag: the command, a subcommand, or a
 * positional argument. */
static int take_word(struct cli_invocation *inv, const struct cli_command *cmds, size_t n,
		     const char *word, bool dashdash, char **err)
{
	if (inv->cmd) {
		inv->pos = xgrow(inv->pos, sizeof(*inv->pos), inv->n_pos + 1, &inv->alloc_pos);
		inv->pos[inv->n_pos++] = word;
		return 0;
	}
	if (dashdash && !inv->group) {
		/* Words after "--" are arguments, never the command. */
		if (is_group(cmds, n, word) || cmd_find(cmds, n, word))
			*err = xasprintf("'--' must come after the command: paasops %s -- ARGS", word);
		else
			*err = xasprintf("missing command before '--' (found '%s' after it)", word);
		return -EINVAL;
	}
	if (inv->group) {
		char *full = xasprintf("%s %s", inv->group, word);
		inv->cmd = cmd_find(cmds, n, full);
		free(full);
		if (!inv->cmd && group_as_command(inv, cmds, n)) {
			/* `deploy ./dir`: the group's own command, word is its argument. */
			inv->pos = xgrow(inv->pos, sizeof(*inv->pos), inv->n_pos + 1, &inv->alloc_pos);
			inv->pos[inv->n_pos++] = word;
			return 0;
		}
		if (!inv->cmd) {
			char *subs = group_subcommands(cmds, n, inv->group);
			*err = xasprintf("unknown command '%s %s' (choose one of: %s)", inv->group,
					 word, subs);
			free(subs);
			return -EINVAL;
		}
		inv->group = NULL;
		return 0;
	}
	if (is_group(cmds, n, word)) {
		inv->group = word;
		return 0;
	}
	inv->cmd = cmd_find(cmds, n, word);
	if (!inv->cmd) {
		*err = unknown_command(cmds, n, word);
		return -EINVAL;
	}
	return 0;
}

static int check_arity(const struct cli_invocation *inv, char **err)
{
	const struct cli_command *cmd = inv->cmd;
	if ((int)inv->n_pos < cmd->min_args) {
		*err = xasprintf("missing arguments: usage: paasops %s %s", cmd->name, cmd->usage);
		return -EINVAL;
	}
	if (cmd->max_args >= 0 && (int)inv->n_pos > cmd->max_args) {
		*err = xasprintf("unexpected argument '%s': usage: paasops %s %s",
				 inv->pos[cmd->max_args], cmd->name, cmd->usage);
		return -EINVAL;
	}
	return 0;
}

int cli__parse(int argc, char **argv, const struct cli_command *cmds, size_t n_cmds,
	      struct cli_invocation *inv, char **err)
{
	memset(inv, 0, sizeof(*inv));
	bool dashdash = false;
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		int r;
		if (!dashdash && strcmp(arg, "--") == 0) {
			dashdash = true;
			continue;
		}
		if (!dashdash && arg[0] == '-' && arg[1])
			group_as_command(inv, cmds, n_cmds);
		if (!dashdash && arg[0] == '-' && arg[1] == '-')
			r = parse_long(inv, argc, argv, &i, err);
		else if (!dashdash && arg[0] == '-' && arg[1])
			r = parse_short(inv, argc, argv, &i, err);
		else
			r = take_word(inv, cmds, n_cmds, arg, dashdash, err);
		if (r < 0)
			return r;
	}
	group_as_command(inv, cmds, n_cmds);
	if (inv->help)
		return 0;
	if (inv->group) {
		char *subs = group_subcommands(cmds, n_cmds, inv->group);
		*err = xasprintf("'%s' needs a subcommand: %s", inv->group, subs);
		free(subs);
		return -EINVAL;
	}
	if (!inv->cmd) {
		*err = xstrdup("missing command");
		return -EINVAL;
	}
	return check_arity(inv, err);
}

void cli__invocation_release(struct cli_invocation *inv)
{
	free(inv->pos);
	free(inv->vals);
	inv->pos = NULL;
	inv->vals = NULL;
	inv->n_pos = inv->n_vals = inv->alloc_pos = inv->alloc_vals = 0;
}

const char *cli__flag(const struct cli_invocation *inv, const char *name)
{
	const char *found = NULL;
	for (size_t i = 0; i < inv->n_vals; i++)
		if (strcmp(inv->vals[i].opt->name, name) == 0)
			found = inv->vals[i].value ? inv->vals[i].value : "";
	return found;
}

/* ------------------------------------------------------------------------ */
/* Argument forms                                                           */

int cli__parse_count(const char *s, int64_t max, int64_t *out)
{
	if (!s || !*s || strlen(s) > 18)
		return -EINVAL;
	int64_t v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		v = v * 10 + (*p - '0');
	}
	if (v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int cli__scale_parse(const char *const *args, size_t n, struct json **out, char **err)
{
	struct json *body = json_object();
	struct json *procs = json_set(body, "processes", json_object());
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(args[i], '=');
		int64_t count;
		if (!eq || eq == args[i]) {
			*err = xasprintf("invalid scale argument '%s': expected PROCESS=COUNT, "
					 "like web=3",
					 args[i]);
			goto fail;
		}
		char *name = xstrndup(args[i], (size_t)(eq - args[i]));
		if (json_get(procs, name)) {
			*err = xasprintf("process type '%s' is given more than once", name);
			free(name);
			goto fail;
		}
		if (cli__parse_count(eq + 1, CLI_MAX_SCALE, &count) < 0) {
			*err = xasprintf("invalid scale argument '%s': the count must be a whole "
					 "number from 0 to %d",
					 args[i], CLI_MAX_SCALE);
			free(name);
			goto fail;
		}
		json_set_int(procs, name, count);
		free(name);
	}
	*out = body;
	return 0;
fail:
	json_free(body);
	return -EINVAL;
}
