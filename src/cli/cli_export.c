/* cli_export.c: `export kubernetes`. The daemon translates the app's live
 * release (GET /v1/apps/NAME/export/kubernetes, .../export/dockerfile);
 * the CLI writes the List it answers as a multi-document YAML stream, or
 * prints it as JSON, or prints the Dockerfile.
 *
 * The YAML is written, never read: block style with every string (keys
 * included) as a double-quoted scalar in JSON syntax, which YAML reads as
 * the same string whatever it holds (": ", "#", quotes, newlines). */
#include "cli/cli_internal.h"
#include "compat/json.h"
#include "core/util.h"
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* YAML                                                                     */

/* Decodes the UTF-8 sequence at s (valid: it came out of the JSON parser);
 * returns its length and sets *cp. */
static size_t utf8_next(const unsigned char *s, uint32_t *cp)
{
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	size_t n = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : 2;
	uint32_t v = s[0] & (0x7f >> n);
	for (size_t k = 1; k < n; k++) {
		if ((s[k] & 0xc0) != 0x80) { /* not valid after all: take the byte alone */
			*cp = 0xfffd;
			return 1;
		}
		v = (v << 6) | (s[k] & 0x3f);
	}
	*cp = v;
	return n;
}

void cli__yaml_quote(struct strbuf *out, const char *s)
{
	strbuf_addc(out, '"');
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		uint32_t cp;
		size_t n = utf8_next(p, &cp);
		switch (cp) {
		case '"': strbuf_adds(out, "\\\""); break;
		case '\\': strbuf_adds(out, "\\\\"); break;
		case '\n': strbuf_adds(out, "\\n"); break;
		case '\t': strbuf_adds(out, "\\t"); break;
		case '\r': strbuf_adds(out, "\\r"); break;
		default:
			/* What YAML does not allow raw in a stream (C0 and C1 controls,
			 * DEL, BOM, non-characters) is escaped as \uXXXX, which JSON
			 * and YAML read alike. */
			if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) || cp == 0xfeff ||
			    cp == 0xfffe || cp == 0xffff || cp == 0xfffd)
				strbuf_addf(out, "\\u%04x", (unsigned)cp);
			else
				strbuf_add(out, p, n);
		}
		p += n;
	}
	strbuf_addc(out, '"');
}

static void yaml_scalar(struct strbuf *out, const struct json *j)
{
	if (json_is_string(j)) {
		cli__yaml_quote(out, json_str(j));
	} else if (json_is_bool(j)) {
		strbuf_adds(out, json_true(j) ? "true" : "false");
	} else if (json_is_number(j)) {
		char *s = json_print(j, false);
		strbuf_adds(out, s);
		free(s);
	} else if (json_is_object(j)) {
		strbuf_adds(out, "{}"); /* only when empty */
	} else if (json_is_array(j)) {
		strbuf_adds(out, "[]");
	} else {
		strbuf_adds(out, "null");
	}
}

static bool yaml_nested(const struct json *j)
{
	return (json_is_object(j) || json_is_array(j)) && json_size(j) > 0;
}

static void indent(struct strbuf *out, int n)
{
	for (int k = 0; k < n; k++)
		strbuf_addc(out, ' ');
}

static void yaml_node(struct strbuf *out, const struct json *j, int level, bool inline_first);

/* The members of a non-empty object at column level. With inline_first
 * the first one continues the current line (after "- "). */
static void yaml_members(struct strbuf *out, const struct json *j, int level, bool inline_first)
{
	bool first = true;
	for (const struct json *m = json_first(j); m; m = json_next(m)) {
		if (!(first && inline_first))
			indent(out, level);
		first = false;
		cli__yaml_quote(out, json_key(m));
		strbuf_addc(out, ':');
		if (yaml_nested(m)) {
			strbuf_addc(out, '\n');
			/* A list under a key may sit at the key's column. */
			yaml_node(out, m, json_is_array(m) ? level : level + 2, false);
		} else {
			strbuf_addc(out, ' ');
			yaml_scalar(out, m);
			strbuf_addc(out, '\n');
		}
	}
}

static void yaml_node(struct strbuf *out, const struct json *j, int level, bool inline_first)
{
	if (json_is_object(j) && json_size(j) > 0) {
		yaml_members(out, j, level, inline_first);
		return;
	}
	if (json_is_array(j) && json_size(j) > 0) {
		bool first = true;
		for (const struct json *e = json_first(j); e; e = json_next(e)) {
			if (!(first && inline_first))
				indent(out, level);
			first = false;
			strbuf_adds(out, "- ");
			if (yaml_nested(e)) {
				yaml_node(out, e, level + 2, true);
			} else {
				yaml_scalar(out, e);
				strbuf_addc(out, '\n');
			}
		}
		return;
	}
	if (!inline_first)
		indent(out, level);
	yaml_scalar(out, j);
	strbuf_addc(out, '\n');
}

void cli__yaml_documents(struct strbuf *out, const struct json *items)
{
	for (const struct json *e = json_first(items); e; e = json_next(e)) {
		strbuf_adds(out, "---\n");
		yaml_node(out, e, 0, false);
	}
}

/* ------------------------------------------------------------------------ */
/* The command                                                              */

/* Same rules as the daemon's (src/export/export.c), checked here so that a
 * typo is a usage error before anything is asked. */
static bool namespace_ok(const char *ns)
{
	size_t n = strlen(ns);
	if (n == 0 || n > 63 || ns[0] == '-' || ns[n - 1] == '-')
		return false;
	for (size_t k = 0; k < n; k++)
		if (!(islower((unsigned char)ns[k]) || isdigit((unsigned char)ns[k]) || ns[k] == '-'))
			return false;
	return true;
}

static bool image_ok(const char *image)
{
	size_t n = strlen(image);
	if (n == 0 || n > 512)
		return false;
	for (size_t k = 0; k < n; k++)
		if ((unsigned char)image[k] <= ' ' || image[k] == 0x7f)
			return false;
	return true;
}

int cli__write_output(struct cli *c, const char *file, const char *text)
{
	if (!file || !strcmp(file, "-")) {
		fputs(text, c->out);
		return CLI_EXIT_OK;
	}
	FILE *f = fopen(file, "we");
	bool ok = f && fputs(text, f) >= 0;
	int e = errno;
	if (f && fclose(f) != 0 && ok) {
		ok = false;
		e = errno;
	}
	return ok ? CLI_EXIT_OK : cli__fail(c, "cannot write '%s': %s", file, strerror(e));
}

int cli__cmd_export_kubernetes(struct cli *c)
{
	const char *app = c->inv->pos[0];
	const char *image = cli__flag(c->inv, "image");
	const char *ns = cli__flag(c->inv, "namespace");
	const char *file = cli__flag(c->inv, "output");
	bool dockerfile = cli__flag(c->inv, "dockerfile") != NULL;
	if (image && !image_ok(image))
		return cli__usage_error(c, "invalid --image '%s': it must be non-empty, at most 512 bytes, without spaces or control characters",
					image);
	if (ns && !namespace_ok(ns))
		return cli__usage_error(c, "invalid --namespace '%s': use 1-63 characters a-z, 0-9 and '-', starting and ending with a letter or digit",
					ns);
	if (dockerfile && ns)
		return cli__usage_error(c, "--namespace has no meaning with --dockerfile");
	struct strbuf path;
	strbuf_init(&path, 128);
	char *base = cli__app_path(app, dockerfile ? "/export/dockerfile" : "/export/kubernetes");
	strbuf_adds(&path, base);
	free(base);
	if (image)
		cli__query_add(&path, "image", image);
	if (ns)
		cli__query_add(&path, "namespace", ns);
	struct cli_response res;
	int rc = cli__call(c, "GET", path.buf, NULL, &res);
	strbuf_release(&path);
	if (rc)
		return rc;
	struct strbuf out;
	strbuf_init(&out, 4096);
	if (c->inv->json) {
		char *s = json_print(res.json, true);
		strbuf_addf(&out, "%s\n", s);
		free(s);
	} else if (dockerfile) {
		strbuf_adds(&out, cli__jstr(res.json, "dockerfile", ""));
	} else {
		strbuf_adds(&out, "# Kubernetes manifests for ");
		strbuf_adds(&out, app);
		strbuf_adds(&out, ", written by paasops export kubernetes; see doc/export.md.\n");
		cli__yaml_documents(&out, json_get(res.json, "items"));
	}
	rc = cli__write_output(c, file, out.buf);
	if (rc == CLI_EXIT_OK && file && strcmp(file, "-") != 0) {
		if (dockerfile)
			fprintf(c->err, "wrote a Dockerfile to '%s'; build the image in %s\n", file,
				cli__jstr(res.json, "context", "the release directory"));
		else
			fprintf(c->err, "wrote Kubernetes manifests to '%s'\n", file);
	}
	if (rc == CLI_EXIT_OK && !dockerfile && !c->inv->json) {
		for (const struct json *e = json_first(json_get(res.json, "items")); e; e = json_next(e))
			if (str_eq(json_get_str(e, "kind"), "Secret"))
				fprintf(c->err, "note: fill in the values of Secret '%s' before applying: paasops never reveals them\n",
					cli__jstr(json_get(e, "metadata"), "name", "?"));
	}
	strbuf_release(&out);
	cli__response_release(&res);
	return rc;
}

const struct cli_opt cli__export_kubernetes_opts[] = {
	{"image", 0, "IMAGE", false, "the image the Deployments run (default APP:vN)"},
	{"namespace", 0, "NS", false, "put every object in namespace NS"},
	{"dockerfile", 0, NULL, false, "print a Dockerfile for the image instead"},
	{"output", 'o', "FILE", false, "write to FILE instead of stdout ('-')"},
	{0},
};
