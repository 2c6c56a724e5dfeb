/* spec.c: paasops.yaml → struct spec. The YAML tree from compat/yaml is
 * walked once; every problem found is recorded with its line and column and
 * the walk goes on, so that the user sees every error of a file at once.
 * A spec is returned only when no error was found. Each mapping level has a
 * table of valid keys, used both to dispatch and to suggest a likely key for
 * an unknown one. doc/spec.md is the user-facing reference of the format. */
#include "spec/spec.h"
#include "compat/json.h"
#include "compat/yaml.h"
#include "core/strbuf.h"
#include "core/timeutil.h"
#include "core/util.h"
#include "spec/spec_metrics.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SPEC_MAX_ERRORS 100      /* reported in full; the rest are counted */
#define SPEC_MAX_ROUTES 100      /* per process type */
#define SPEC_MAX_CPU 1024.0      /* cores */
#define SPEC_MIN_MEMORY (4 * 1024 * 1024)
#define SPEC_MAX_CHECKS 1000     /* healthy / unhealthy thresholds */
#define SPEC_MAX_SHOWN 40        /* bytes of user text quoted in a message */

#define DURATION_FORMS "use a number with a unit: 500ms, 10s, 5m, 2h, 1d; a bare number is seconds"
#define SIZE_FORMS "use bytes or a number with a unit: 512K, 256M, 1G"
#define NAME_RULES "use 1-63 characters a-z, 0-9 and '-', not starting or ending with '-'"

/* ------------------------------------------------------ errors, scratch */

/* The buffer of sb for the caller to free. strbuf_detach() re-initialises
 * sb with a fresh allocation, which is released here. */
static char *sb_take(struct strbuf *sb)
{
	char *p = strbuf_detach(sb, NULL);
	strbuf_release(sb);
	return p;
}

struct spec_error {
	int line, col;
	size_t seq;
	char *msg;
};

/* State of one parse: the errors found so far and the strings made for
 * messages, all freed by ctx_release(). */
struct ctx {
	const char *file;
	struct spec_error *errs;
	size_t n_errs, alloc_errs;
	size_t dropped;
	int drop_line, drop_col; /* first error not kept */
	char **scratch;
	size_t n_scratch, alloc_scratch;
	/* One per route of every process, in order: the route's node, or
	 * NULL when the route had errors (and is left out of conflict checks). */
	const struct yaml_value **route_at;
	size_t n_route_at, alloc_route_at;
	/* A spec stored by an earlier version (spec_parse_stored): checks
	 * added since are not made, so that what ran before still loads. */
	bool stored;
};

static void ctx_release(struct ctx *c)
{
	for (size_t i = 0; i < c->n_errs; i++)
		free(c->errs[i].msg);
	free(c->errs);
	for (size_t i = 0; i < c->n_scratch; i++)
		free(c->scratch[i]);
	free(c->scratch);
	free(c->route_at);
}

/* Keeps s (takes ownership) until the end of the parse; returns it. */
static const char *ctx_keep(struct ctx *c, char *s)
{
	c->scratch = xgrow(c->scratch, sizeof(*c->scratch), c->n_scratch + 1, &c->alloc_scratch);
	c->scratch[c->n_scratch++] = s;
	return s;
}

static const char *ctx_fmt(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *ctx_fmt(struct ctx *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = xvasprintf(fmt, ap);
	va_end(ap);
	return ctx_keep(c, s);
}

/* User text made safe to quote in a one-line message: control bytes are
 * escaped and long text is cut (at a character boundary) with "...". */
static const char *ctx_show(struct ctx *c, const char *s, size_t len)
{
	struct strbuf sb;
	strbuf_init(&sb, len < SPEC_MAX_SHOWN ? len + 8 : SPEC_MAX_SHOWN + 8);
	size_t i = 0;
	while (i < len) {
		unsigned char ch = (unsigned char)s[i];
		if (sb.len >= SPEC_MAX_SHOWN && (ch & 0xC0) != 0x80) {
			strbuf_adds(&sb, "...");
			break;
		}
		if (ch < 0x20 || ch == 0x7f)
			strbuf_addf(&sb, "\\x%02x", ch);
		else
			strbuf_addc(&sb, (char)ch);
		i++;
	}
	return ctx_keep(c, sb_take(&sb));
}

static const char *ctx_showv(struct ctx *c, const struct yaml_value *v)
{
	return ctx_show(c, v->str, v->len);
}

static size_t ctx_count(const struct ctx *c)
{
	return c->n_errs + c->dropped;
}

static void ctx_fail(struct ctx *c, const struct yaml_value *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void ctx_fail(struct ctx *c, const struct yaml_value *at, const char *fmt, ...)
{
	int line = at ? at->line : 1, col = at ? at->col : 1;
	if (c->n_errs >= SPEC_MAX_ERRORS) {
		if (!c->dropped++) {
			c->drop_line = line;
			c->drop_col = col;
		}
		return;
	}
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	c->errs = xgrow(c->errs, sizeof(*c->errs), c->n_errs + 1, &c->alloc_errs);
	c->errs[c->n_errs] = (struct spec_error){line, col, c->n_errs, msg};
	c->n_errs++;
}

static int error_cmp(const void *a, const void *b)
{
	const struct spec_error *x = a, *y = b;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Every error as "FILE:LINE:COL: message" lines, in file order. */
static char *ctx_errors(struct ctx *c)
{
	struct strbuf sb;
	strbuf_init(&sb, 256);
	qsort(c->errs, c->n_errs, sizeof(*c->errs), error_cmp);
	for (size_t i = 0; i < c->n_errs; i++) {
		if (i)
			strbuf_addc(&sb, '\n');
		strbuf_addf(&sb, "%s:%d:%d: %s", c->file, c->errs[i].line, c->errs[i].col,
			    c->errs[i].msg);
	}
	if (c->dropped)
		strbuf_addf(&sb, "\n%s:%d:%d: %zu more error%s not shown", c->file, c->drop_line,
			    c->drop_col, c->dropped, c->dropped == 1 ? "" : "s");
	return sb_take(&sb);
}

/* What a node is, for "found ..." in messages. */
static const char *ctx_found(struct ctx *c, const struct yaml_value *v)
{
	if (v->kind != YAML_VALUE_SCALAR)
		return yaml_value_kind_name(v->kind);
	if (yaml_value_is_null(v))
		return "nothing";
	if (!v->plain)
		return ctx_fmt(c, "the quoted string '%s'", ctx_showv(c, v));
	return ctx_fmt(c, "'%s'", ctx_showv(c, v));
}

/* ------------------------------------------------------- mapping walks */

struct keyref {
	const char *s;
	size_t len;
	size_t idx;
};

static int keyref_cmp(const void *a, const void *b)
{
	const struct keyref *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int r = memcmp(x->s, y->s, n);
	if (r)
		return r;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Sorts refs and calls back for every ref equal to an earlier one, with the
 * index of that first one. O(n log n), so that huge mappings stay cheap. */
static void find_duplicates(struct keyref *refs, size_t n,
			    void (*dup)(void *arg, size_t idx, size_t first_idx), void *arg)
{
	qsort(refs, n, sizeof(*refs), keyref_cmp);
	size_t run = 0;
	for (size_t j = 1; j < n; j++) {
		if (refs[j].len == refs[run].len && memcmp(refs[j].s, refs[run].s, refs[j].len) == 0)
			dup(arg, refs[j].idx, refs[run].idx);
		else
			run = j;
	}
}

struct key_dup_arg {
	struct ctx *c;
	const struct yaml_value *m;
	bool *skip;
	const char *noun, *where;
};

static void key_dup(void *arg, size_t idx, size_t first_idx)
{
	struct key_dup_arg *a = arg;
	const struct yaml_value *k = a->m->pairs[idx].key, *first = a->m->pairs[first_idx].key;
	a->skip[idx] = true;
	ctx_fail(a->c, k, "duplicate %s '%s'%s (first at %d:%d)", a->noun, ctx_showv(a->c, k),
		 a->where, first->line, first->col);
}

/* Reports keys of mapping m that are not strings and keys given twice.
 * Returns one flag per pair, true where the caller must skip the pair
 * (caller frees). noun names the keys ("key", "process"). */
static bool *check_keys(struct ctx *c, const struct yaml_value *m, const char *noun,
			const char *where)
{
	size_t n = m->n_pairs;
	bool *skip = xcalloc(n ? n : 1, sizeof(*skip));
	struct keyref *refs = xmalloc((n ? n : 1) * sizeof(*refs));
	size_t nr = 0;
	for (size_t i = 0; i < n; i++) {
		const struct yaml_value *k = m->pairs[i].key;
		if (k->kind != YAML_VALUE_SCALAR) {
			ctx_fail(c, k, "invalid %s%s: keys must be strings, found %s", noun, where,
				 ctx_found(c, k));
			skip[i] = true;
			continue;
		}
		refs[nr++] = (struct keyref){k->str, k->len, i};
	}
	struct key_dup_arg a = {c, m, skip, noun, where};
	find_duplicates(refs, nr, key_dup, &a);
	free(refs);
	return skip;
}

/* A likely intended candidate for word: str_suggest()'s pick, or else a
 * candidate that differs from word by two swapped neighbours ("hots"). */
static const char *suggest(const char *word, const char *const *candidates, size_t n)
{
	const char *hint = str_suggest(word, candidates, n);
	size_t len = strlen(word);
	for (size_t i = 0; !hint && i < n; i++) {
		if (strlen(candidates[i]) != len)
			continue;
		size_t d = 0;
		while (d < len && word[d] == candidates[i][d])
			d++;
		if (d + 1 < len && word[d] == candidates[i][d + 1] &&
		    word[d + 1] == candidates[i][d] && strcmp(word + d + 2, candidates[i] + d + 2) == 0)
			hint = candidates[i];
	}
	return hint;
}

/* Walks mapping m whose valid keys are keys[0..n): reports unknown keys
 * (suggesting a likely one), bad and duplicate keys, and sets found[i] to
 * the entry for keys[i] or NULL. where ends messages (" in process 'web'"). */
static void walk_fields(struct ctx *c, const struct yaml_value *m, const char *where,
			const char *const *keys, size_t n, const struct yaml_pair **found)
{
	for (size_t i = 0; i < n; i++)
		found[i] = NULL;
	bool *skip = check_keys(c, m, "key", where);
	for (size_t i = 0; i < m->n_pairs; i++) {
		if (skip[i])
			continue;
		const struct yaml_value *k = m->pairs[i].key;
		size_t j;
		for (j = 0; j < n; j++)
			if (strlen(keys[j]) == k->len && memcmp(keys[j], k->str, k->len) == 0)
				break;
		if (j < n) {
			found[j] = &m->pairs[i];
			continue;
		}
		const char *hint = suggest(k->str, keys, n);
		ctx_fail(c, k, "unknown key '%s'%s%s%s%s", ctx_showv(c, k), where,
			 hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
	}
	free(skip);
}

/* -------------------------------------------------------- value readers
 *
 * Each reader takes the entry f (NULL when the key is absent, in which case
 * it does nothing and returns false), reports what is wrong with its value
 * and returns true only when *out was set. A key written without a value is
 * an error: remove the key to get the default. */

static const char *key_of(const struct yaml_pair *f)
{
	return f->key->str;
}

/* Where to point for a problem with f's value: the value, or the key when
 * the value is empty (libyaml marks an empty value after the key). */
static const struct yaml_value *at_value(const struct yaml_pair *f)
{
	return yaml_value_is_null(f->value) ? f->key : f->value;
}

static bool want_scalar(struct ctx *c, const struct yaml_pair *f, const char *where,
			const char *what)
{
	const struct yaml_value *v = f->value;
	if (yaml_value_is_null(v)) {
		ctx_fail(c, f->key, "'%s'%s has no value (expected %s)", key_of(f), where, what);
		return false;
	}
	if (v->kind != YAML_VALUE_SCALAR) {
		ctx_fail(c, v, "'%s'%s must be %s, found %s", key_of(f), where, what,
			 ctx_found(c, v));
		return false;
	}
	return true;
}

/* ASCII-only classes: names in a spec must not depend on the locale. */
static bool ascii_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static bool ascii_alnum(char ch)
{
	return ascii_digit(ch) || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static bool only_spaces(const char *s)
{
	for (; *s; s++)
		if (!strchr(" \t\r\n\f\v", *s))
			return false;
	return true;
}

/* A non-empty string; numbers and bools are taken as their text. */
static bool get_string(struct ctx *c, const struct yaml_pair *f, const char *where, char **out)
{
	if (!f || !want_scalar(c, f, where, "a string"))
		return false;
	const struct yaml_value *v = f->value;
	if (strlen(v->str) != v->len) {
		ctx_fail(c, v, "'%s'%s contains a NUL character", key_of(f), where);
		return false;
	}
	if (only_spaces(v->str)) {
		ctx_fail(c, v, "'%s'%s is empty", key_of(f), where);
		return false;
	}
	free(*out);
	*out = xstrdup(v->str);
	return true;
}

static bool is_int_text(const char *s)
{
	if (*s == '+' || *s == '-')
		s++;
	if (!*s)
		return false;
	for (; *s; s++)
		if (!ascii_digit(*s))
			return false;
	return true;
}

static bool get_int(struct ctx *c, const struct yaml_pair *f, const char *where, int64_t min,
		    int64_t max, int *out)
{
	if (!f)
		return false;
	const char *what = ctx_fmt(c, "an integer from %lld to %lld", (long long)min, (long long)max);
	if (!want_scalar(c, f, where, what))
		return false;
	const struct yaml_value *v = f->value;
	int64_t n;
	if (!v->plain || !is_int_text(v->str) || str_to_i64(v->str, &n) < 0 || n < min ||
	    n > max) {
		ctx_fail(c, v, "'%s'%s must be %s, found %s", key_of(f), where, what,
			 ctx_found(c, v));
		return false;
	}
	*out = (int)n;
	return true;
}

/* A finite decimal number (no hex, inf or nan) in the given range;
 * min_open makes the lower bound exclusive. */
static bool get_number(struct ctx *c, const struct yaml_pair *f, const char *where, double min,
		       bool min_open, double max, double *out)
{
	const char *what = "a number";
	if (min_open && max == HUGE_VAL)
		what = ctx_fmt(c, "a number greater than %g", min);
	else if (min_open)
		what = ctx_fmt(c, "a number greater than %g and at most %g", min, max);
	else if (max != HUGE_VAL)
		what = ctx_fmt(c, "a number from %g to %g", min, max);
	if (!f || !want_scalar(c, f, where, what))
		return false;
	const struct yaml_value *v = f->value;
	const char *s = v->str;
	bool ok = v->plain && *s && strspn(s, "0123456789+-.eE") == v->len;
	char *end = NULL;
	double d = 0;
	if (ok) {
		errno = 0;
		d = strtod(s, &end);
		ok = *end == '\0' && end != s && errno != ERANGE && isfinite(d);
	}
	if (ok)
		ok = (min_open ? d > min : d >= min) && d <= max;
	if (!ok) {
		ctx_fail(c, v, "'%s'%s must be %s, found %s", key_of(f), where, what,
			 ctx_found(c, v));
		return false;
	}
	*out = d;
	return true;
}

static bool get_bool(struct ctx *c, const struct yaml_pair *f, const char *where, bool *out)
{
	static const char *const yes[] = {"true", "True", "TRUE"};
	static const char *const no[] = {"false", "False", "FALSE"};
	if (!f || !want_scalar(c, f, where, "true or false"))
		return false;
	const struct yaml_value *v = f->value;
	for (size_t i = 0; v->plain && i < ARRAY_SIZE(yes); i++) {
		if (strcmp(v->str, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcmp(v->str, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	ctx_fail(c, v, "'%s'%s must be true or false, found %s", key_of(f), where,
		 ctx_found(c, v));
	return false;
}

/* A duration of at least min_ms (1 ms when positive is wanted). */
static bool get_duration(struct ctx *c, const struct yaml_pair *f, const char *where,
			 int64_t min_ms, int64_t *out)
{
	if (!f || !want_scalar(c, f, where, "a duration"))
		return false;
	const struct yaml_value *v = f->value;
	int64_t ms;
	int r = strlen(v->str) == v->len ? duration_parse(v->str, &ms) : -EINVAL;
	if (r == -ERANGE) {
		ctx_fail(c, v, "'%s'%s is too long a duration: %s", key_of(f), where,
			 ctx_found(c, v));
		return false;
	}
	if (r < 0) {
		ctx_fail(c, v, "'%s'%s is not a valid duration: found %s (%s)", key_of(f), where,
			 ctx_found(c, v), DURATION_FORMS);
		return false;
	}
	if (ms < min_ms) {
		char m[48];
		duration_min_text(min_ms, m, sizeof(m));
		ctx_fail(c, v, "'%s'%s must be %s, found %s", key_of(f), where, m, ctx_found(c, v));
		return false;
	}
	*out = ms;
	return true;
}

static bool get_size(struct ctx *c, const struct yaml_pair *f, const char *where,
		     int64_t min_bytes, const char *min_text, int64_t *out)
{
	if (!f || !want_scalar(c, f, where, "a size"))
		return false;
	const struct yaml_value *v = f->value;
	int64_t n;
	int r = strlen(v->str) == v->len ? size_parse(v->str, &n) : -EINVAL;
	if (r == -ERANGE) {
		ctx_fail(c, v, "'%s'%s is too large: %s", key_of(f), where, ctx_found(c, v));
		return false;
	}
	if (r < 0) {
		ctx_fail(c, v, "'%s'%s is not a valid size: found %s (%s)", key_of(f), where,
			 ctx_found(c, v), SIZE_FORMS);
		return false;
	}
	if (n < min_bytes) {
		ctx_fail(c, v, "'%s'%s must be at least %s, found %s", key_of(f), where, min_text,
			 ctx_found(c, v));
		return false;
	}
	*out = n;
	return true;
}

/* One of choices[0..n); *out is borrowed from choices. */
static bool get_choice(struct ctx *c, const struct yaml_pair *f, const char *where,
		       const char *const *choices, size_t n, const char **out)
{
	if (!f)
		return false;
	struct strbuf sb;
	strbuf_init(&sb, 64);
	for (size_t i = 0; i < n; i++)
		strbuf_addf(&sb, "%s'%s'", i == 0 ? "" : i + 1 == n ? " or " : ", ", choices[i]);
	const char *list = ctx_keep(c, sb_take(&sb));
	const char *what = ctx_fmt(c, "one of %s", list);
	if (!want_scalar(c, f, where, what))
		return false;
	const struct yaml_value *v = f->value;
	for (size_t i = 0; i < n; i++) {
		if (strlen(choices[i]) == v->len && memcmp(choices[i], v->str, v->len) == 0) {
			*out = choices[i];
			return true;
		}
	}
	const char *hint = suggest(v->str, choices, n);
	ctx_fail(c, v, "'%s'%s must be %s, found %s%s%s%s", key_of(f), where, what,
		 ctx_found(c, v), hint ? " (did you mean '" : "", hint ? hint : "",
		 hint ? "'?)" : "");
	return false;
}

static bool want_mapping(struct ctx *c, const struct yaml_pair *f, const char *where,
			 const char *what)
{
	if (yaml_value_is_null(f->value)) {
		ctx_fail(c, f->key, "'%s'%s has no value (expected %s)", key_of(f), where, what);
		return false;
	}
	if (f->value->kind != YAML_VALUE_MAPPING) {
		ctx_fail(c, f->value, "'%s'%s must be %s, found %s", key_of(f), where, what,
			 ctx_found(c, f->value));
		return false;
	}
	return true;
}

static bool want_list(struct ctx *c, const struct yaml_pair *f, const char *where,
		      const char *what)
{
	if (yaml_value_is_null(f->value)) {
		ctx_fail(c, f->key, "'%s'%s has no value (expected %s)", key_of(f), where, what);
		return false;
	}
	if (f->value->kind != YAML_VALUE_SEQUENCE) {
		ctx_fail(c, f->value, "'%s'%s must be %s, found %s", key_of(f), where, what,
			 ctx_found(c, f->value));
		return false;
	}
	return true;
}

/* ----------------------------------------------------------------- names */

/* Why name breaks the DNS-label rules, or NULL when it follows them. */
static const char *name_problem(struct ctx *c, const char *name, size_t len)
{
	if (len == 0)
		return "it is empty";
	if (len > 63)
		return "it is longer than 63 characters";
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)name[i];
		if (ch >= 'A' && ch <= 'Z')
			return "it must be lowercase";
		if (ch >= 0x80)
			return "it contains a non-ASCII character";
		if (!(ch >= 'a' && ch <= 'z') && !(ch >= '0' && ch <= '9') && ch != '-')
			return ch < 0x20 || ch == 0x7f
				       ? "it contains a control character"
				       : ctx_fmt(c, "it contains '%c'", ch);
	}
	if (name[0] == '-' || name[len - 1] == '-')
		return "it must not start or end with '-'";
	return NULL;
}

bool spec_valid_name(const char *name)
{
	if (!name)
		return false;
	size_t len = strlen(name);
	if (len == 0 || len > 63 || name[0] == '-' || name[len - 1] == '-')
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = name[i];
		if (!(ch >= 'a' && ch <= 'z') && !(ch >= '0' && ch <= '9') && ch != '-')
			return false;
	}
	return true;
}

static bool valid_env_name(const char *s, size_t len)
{
	if (len == 0 || strlen(s) != len || ascii_digit(s[0]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!ascii_alnum(s[i]) && s[i] != '_')
			return false;
	return true;
}

/* Why host is not an exact lowercase hostname or a "*." wildcard, or NULL. */
static const char *host_problem(struct ctx *c, const char *h, size_t len)
{
	if (strlen(h) != len)
		return "it contains a NUL character";
	if (len == 0)
		return "it is empty";
	if (strstr(h, "://"))
		return "it must not include a scheme (write only the hostname)";
	if (strchr(h, '/'))
		return "it must not include a path (use 'path')";
	if (strchr(h, ':'))
		return "it must not include a port";
	if (len > 253)
		return "it is longer than 253 characters";
	const char *p = h;
	if (str_starts_with(p, "*.")) {
		p += 2;
		if (!*p)
			return "a wildcard needs a domain after '*.'";
	}
	if (strchr(p, '*'))
		return "'*' is only allowed as a leading '*.' wildcard";
	for (;;) {
		size_t n = strcspn(p, ".");
		if (n == 0)
			return "it has an empty label (a leading, trailing or double '.')";
		if (n > 63)
			return "a label is longer than 63 characters";
		for (size_t i = 0; i < n; i++) {
			unsigned char ch = (unsigned char)p[i];
			if (ch >= 'A' && ch <= 'Z')
				return "it must be lowercase";
			if (!(ch >= 'a' && ch <= 'z') && !(ch >= '0' && ch <= '9') && ch != '-')
				return ch < 0x20 || ch >= 0x7f
					       ? "it contains a character other than a-z, 0-9, '-' and '.'"
					       : ctx_fmt(c, "it contains '%c'", ch);
		}
		if (p[0] == '-' || p[n - 1] == '-')
			return "a label must not start or end with '-'";
		if (!p[n])
			return NULL;
		p += n + 1;
	}
}

static const char *path_problem(const struct ctx *c, const char *p, size_t len)
{
	if (strlen(p) != len)
		return "it contains a NUL character";
	if (p[0] != '/')
		return "it must start with '/'";
	for (; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch <= 0x20 || ch == 0x7f)
			return "it must not contain spaces or control characters";
		if (ch == '?' || ch == '#')
			return "it must not contain '?' or '#' (it is a path prefix)";
		if (c->stored)
			continue;
		if (ch == '/' && p[1] == '/')
			return "it must not contain '//' (an empty segment)";
		/* Routes match the path as sent: a prefix with dot segments would
		 * claim requests that resolve elsewhere ("/x/../" is "/"). */
		if (ch == '/' && p[1] == '.' && (p[2] == '/' || !p[2] || (p[2] == '.' && (p[3] == '/' || !p[3]))))
			return "it must not contain '.' or '..' segments";
	}
	return NULL;
}

/* Alert names follow Prometheus habits ("HighLatency", "slow_p95"). */
static bool valid_alert_name(const char *s, size_t len)
{
	if (len == 0 || len > 63 || strlen(s) != len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!ascii_alnum(s[i]) && !strchr("_.-", s[i]))
			return false;
	return true;
}

/* Prometheus metric name syntax: [a-zA-Z_:][a-zA-Z0-9_:]*. */
static bool valid_metric_name(const char *s, size_t len)
{
	if (len == 0 || len > 200 || strlen(s) != len || ascii_digit(s[0]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!ascii_alnum(s[i]) && s[i] != '_' && s[i] != ':')
			return false;
	return true;
}

/* ------------------------------------------------------------------ env */

static void parse_env(struct ctx *c, const struct yaml_pair *f, const char *where,
		      struct spec_env **out, size_t *n_out)
{
	if (!want_mapping(c, f, where, "a mapping of variable names to values"))
		return;
	const struct yaml_value *m = f->value;
	const char *in = ctx_fmt(c, " in 'env'%s", where);
	bool *skip = check_keys(c, m, "env var", in);
	*out = xcalloc(m->n_pairs ? m->n_pairs : 1, sizeof(**out));
	for (size_t i = 0; i < m->n_pairs; i++) {
		if (skip[i])
			continue;
		const struct yaml_value *k = m->pairs[i].key, *v = m->pairs[i].value;
		const char *shown = ctx_showv(c, k);
		bool ok = true;
		if (!valid_env_name(k->str, k->len)) {
			ctx_fail(c, k,
				 "invalid env var name '%s'%s: use letters, digits and '_', "
				 "not starting with a digit",
				 shown, in);
			ok = false;
		}
		if (yaml_value_is_null(v)) {
			ctx_fail(c, k, "env var '%s'%s has no value (write \"\" for an empty string)",
				 shown, in);
			ok = false;
		} else if (v->kind != YAML_VALUE_SCALAR) {
			ctx_fail(c, v, "env var '%s'%s must be a string, number or bool, found %s",
				 shown, in, ctx_found(c, v));
			ok = false;
		} else if (strlen(v->str) != v->len) {
			ctx_fail(c, v, "env var '%s'%s contains a NUL character", shown, in);
			ok = false;
		}
		if (!ok)
			continue;
		(*out)[*n_out].key = xstrdup(k->str);
		(*out)[*n_out].value = xstrdup(v->str);
		(*n_out)++;
	}
	free(skip);
}

/* --------------------------------------------------------------- health */

static const char *const health_keys[] = {"http",     "tcp",       "cmd",           "interval",
					  "timeout",  "healthy",   "unhealthy",     "boot_deadline"};
enum { H_HTTP, H_TCP, H_CMD, H_INTERVAL, H_TIMEOUT, H_HEALTHY, H_UNHEALTHY, H_BOOT, H_N };

static void health_defaults(struct spec_health *h)
{
	h->kind = SPEC_HEALTH_NONE;
	h->interval_ms = 10000;
	h->timeout_ms = 1000;
	h->healthy = 1;
	h->unhealthy = 3;
	h->boot_deadline_ms = 60000;
}

static void parse_health(struct ctx *c, const struct yaml_pair *hf, const char *of,
			 struct spec_health *h)
{
	if (!want_mapping(c, hf, of, "a mapping with one of 'http', 'tcp' or 'cmd'"))
		return;
	const char *where = ctx_fmt(c, " in 'health'%s", of);
	const struct yaml_pair *f[H_N];
	walk_fields(c, hf->value, where, health_keys, H_N, f);

	int checks = !!f[H_HTTP] + !!f[H_TCP] + !!f[H_CMD];
	if (checks > 1)
		ctx_fail(c, hf->value,
			 "'health'%s has more than one check: keep exactly one of 'http', 'tcp' "
			 "and 'cmd'",
			 of);
	else if (checks == 0)
		ctx_fail(c, hf->value, "'health'%s needs a check: 'http', 'tcp' or 'cmd'", of);

	if (f[H_HTTP]) {
		h->kind = SPEC_HEALTH_HTTP;
		if (get_string(c, f[H_HTTP], where, &h->target)) {
			const char *why = path_problem(c, h->target, strlen(h->target));
			if (why)
				ctx_fail(c, f[H_HTTP]->value,
					 "'http'%s must be a path like '/healthz': %s, found %s",
					 where, why, ctx_found(c, f[H_HTTP]->value));
		}
	}
	bool tcp;
	if (get_bool(c, f[H_TCP], where, &tcp)) {
		if (tcp)
			h->kind = SPEC_HEALTH_TCP;
		else
			ctx_fail(c, f[H_TCP]->value,
				 "'tcp'%s can only be true (remove 'health' to disable checks)", where);
	}
	if (f[H_CMD]) {
		h->kind = SPEC_HEALTH_CMD;
		get_string(c, f[H_CMD], where, &h->target);
	}
	if (checks > 1) {
		free(h->target);
		h->target = NULL;
	}
	get_duration(c, f[H_INTERVAL], where, 1, &h->interval_ms);
	get_duration(c, f[H_TIMEOUT], where, 1, &h->timeout_ms);
	get_int(c, f[H_HEALTHY], where, 1, SPEC_MAX_CHECKS, &h->healthy);
	get_int(c, f[H_UNHEALTHY], where, 1, SPEC_MAX_CHECKS, &h->unhealthy);
	get_duration(c, f[H_BOOT], where, 1, &h->boot_deadline_ms);
}

/* ------------------------------------------------------------ resources */

static const char *const resources_keys[] = {"memory", "cpu"};
enum { RS_MEMORY, RS_CPU, RS_N };

static void parse_resources(struct ctx *c, const struct yaml_pair *rf, const char *of,
			    struct spec_resources *r)
{
	if (!want_mapping(c, rf, of, "a mapping with 'memory' and/or 'cpu'"))
		return;
	const char *where = ctx_fmt(c, " in 'resources'%s", of);
	const struct yaml_pair *f[RS_N];
	walk_fields(c, rf->value, where, resources_keys, RS_N, f);
	get_size(c, f[RS_MEMORY], where, SPEC_MIN_MEMORY, "4M", &r->memory_bytes);
	get_number(c, f[RS_CPU], where, 0, true, SPEC_MAX_CPU, &r->cpu);
}

/* --------------------------------------------------------------- routes */

static const char *const route_keys[] = {"host", "path", "max_body", "https"};
enum { RT_HOST, RT_PATH, RT_MAX_BODY, RT_HTTPS, RT_N };
static const char *const https_modes[] = {"allow", "redirect"};

static void parse_routes(struct ctx *c, const struct yaml_pair *rf, const char *of,
			 struct spec_process *p)
{
	if (!want_list(c, rf, of, "a list of {host, path} mappings"))
		return;
	const struct yaml_value *l = rf->value;
	if (l->n_items > SPEC_MAX_ROUTES) {
		ctx_fail(c, l, "'routes'%s has %zu routes; the limit is %d", of, l->n_items,
			 SPEC_MAX_ROUTES);
		return;
	}
	p->routes = xcalloc(l->n_items ? l->n_items : 1, sizeof(*p->routes));
	for (size_t i = 0; i < l->n_items; i++) {
		const struct yaml_value *item = l->items[i];
		const char *where = ctx_fmt(c, " in route %zu%s", i + 1, of);
		struct spec_route *r = &p->routes[p->n_routes++];
		size_t errors_before = ctx_count(c);
		r->path = xstrdup("/");
		r->max_body = SPEC_DEFAULT_MAX_BODY;
		c->route_at = xgrow(c->route_at, sizeof(*c->route_at), c->n_route_at + 1,
				    &c->alloc_route_at);
		c->route_at[c->n_route_at++] = NULL;
		if (item->kind != YAML_VALUE_MAPPING) {
			ctx_fail(c, item, "route %zu%s must be a mapping like {host: app.example.com, "
				 "path: /}, found %s",
				 i + 1, of, ctx_found(c, item));
			continue;
		}
		const struct yaml_pair *f[RT_N];
		walk_fields(c, item, where, route_keys, RT_N, f);
		if (get_string(c, f[RT_HOST], where, &r->host)) {
			const char *why = host_problem(c, r->host, f[RT_HOST]->value->len);
			if (why)
				ctx_fail(c, f[RT_HOST]->value, "invalid host '%s'%s: %s",
					 ctx_showv(c, f[RT_HOST]->value), where, why);
		}
		if (get_string(c, f[RT_PATH], where, &r->path)) {
			const char *why = path_problem(c, r->path, f[RT_PATH]->value->len);
			if (why)
				ctx_fail(c, f[RT_PATH]->value, "invalid path '%s'%s: %s",
					 ctx_showv(c, f[RT_PATH]->value), where, why);
		}
		get_size(c, f[RT_MAX_BODY], where, 0, "0", &r->max_body);
		const char *https;
		if (get_choice(c, f[RT_HTTPS], where, https_modes, ARRAY_SIZE(https_modes), &https))
			r->https_redirect = https == https_modes[1];
		if (ctx_count(c) == errors_before)
			c->route_at[c->n_route_at - 1] = item;
	}
}

struct route_dup_arg {
	struct ctx *c;
	const struct spec *s;
	const size_t *proc_of; /* ref → process index */
	const struct spec_route **route_of;
	const struct yaml_value **at;
};

static void route_dup(void *arg, size_t idx, size_t first_idx)
{
	struct route_dup_arg *a = arg;
	const struct spec_route *r = a->route_of[idx];
	const struct yaml_value *first = a->at[first_idx];
	ctx_fail(a->c, a->at[idx], "route '%s%s' is already used by process '%s' (at %d:%d)",
		 r->host ? ctx_show(a->c, r->host, strlen(r->host)) : "*",
		 ctx_show(a->c, r->path, strlen(r->path)), a->s->procs[a->proc_of[first_idx]].name,
		 first->line, first->col);
}

/* Two routes with the same host and path would make routing ambiguous.
 * Only routes without errors are compared (see ctx.route_at). */
static void check_route_conflicts(struct ctx *c, const struct spec *s)
{
	size_t total = c->n_route_at;
	if (!total)
		return;
	struct keyref *refs = xmalloc(total * sizeof(*refs));
	size_t *proc_of = xmalloc(total * sizeof(*proc_of));
	const struct spec_route **route_of = xmalloc(total * sizeof(*route_of));
	const struct yaml_value **at = xmalloc(total * sizeof(*at));
	size_t n = 0, k = 0;
	for (size_t i = 0; i < s->n_procs; i++) {
		for (size_t j = 0; j < s->procs[i].n_routes; j++, k++) {
			const struct spec_route *r = &s->procs[i].routes[j];
			if (k >= total || !c->route_at[k])
				continue;
			/* A valid host and path hold no space. */
			const char *key = ctx_fmt(c, "%s %s", r->host ? r->host : "", r->path);
			refs[n] = (struct keyref){key, strlen(key), n};
			proc_of[n] = i;
			route_of[n] = r;
			at[n] = c->route_at[k];
			n++;
		}
	}
	struct route_dup_arg a = {c, s, proc_of, route_of, at};
	find_duplicates(refs, n, route_dup, &a);
	free(refs);
	free(proc_of);
	free(route_of);
	free(at);
}

/* --------------------------------------------------------------- deploy */

static const char *const deploy_keys[] = {"strategy", "max_surge",        "max_unavailable",
					  "canary",   "min_healthy",      "healthy_deadline",
					  "auto_rollback", "auto_promote", "max_error_rate",
					  "max_error_factor", "max_latency_factor"};
enum { D_STRATEGY, D_SURGE, D_UNAVAIL, D_CANARY, D_MIN_HEALTHY, D_DEADLINE, D_ROLLBACK, D_PROMOTE,
       D_ERR_RATE, D_ERR_FACTOR, D_LAT_FACTOR, D_N };
static const char *const strategies[] = {"rolling", "canary", "recreate"};

static void deploy_defaults(struct spec_deploy *d)
{
	d->strategy = xstrdup("rolling");
	d->max_surge = 1;
	d->max_unavailable = 0;
	d->canary = 1;
	d->min_healthy_ms = 10000;
	d->healthy_deadline_ms = 5 * 60000;
	d->auto_rollback = true;
	d->auto_promote = true;
	d->max_error_rate = 0.01;
	d->max_error_factor = 2;
	d->max_latency_factor = 2;
}

static void parse_deploy(struct ctx *c, const struct yaml_pair *df, const char *of,
			 struct spec_deploy *d)
{
	if (!want_mapping(c, df, of, "a mapping"))
		return;
	const char *where = ctx_fmt(c, " in 'deploy'%s", of);
	const struct yaml_pair *f[D_N];
	walk_fields(c, df->value, where, deploy_keys, D_N, f);
	const char *strategy;
	bool bad = false;
	if (get_choice(c, f[D_STRATEGY], where, strategies, ARRAY_SIZE(strategies), &strategy)) {
		free(d->strategy);
		d->strategy = xstrdup(strategy);
	} else {
		bad = f[D_STRATEGY] != NULL;
	}
	bad |= f[D_SURGE] && !get_int(c, f[D_SURGE], where, 0, SPEC_MAX_INSTANCES, &d->max_surge);
	bad |= f[D_UNAVAIL] &&
	       !get_int(c, f[D_UNAVAIL], where, 0, SPEC_MAX_INSTANCES, &d->max_unavailable);
	bad |= f[D_CANARY] && !get_int(c, f[D_CANARY], where, 0, SPEC_MAX_INSTANCES, &d->canary);
	bad |= f[D_MIN_HEALTHY] && !get_duration(c, f[D_MIN_HEALTHY], where, 0, &d->min_healthy_ms);
	bad |= f[D_DEADLINE] && !get_duration(c, f[D_DEADLINE], where, 1, &d->healthy_deadline_ms);
	get_bool(c, f[D_ROLLBACK], where, &d->auto_rollback);
	get_bool(c, f[D_PROMOTE], where, &d->auto_promote);
	get_number(c, f[D_ERR_RATE], where, 0, false, 1, &d->max_error_rate);
	get_number(c, f[D_ERR_FACTOR], where, 1, false, 1000, &d->max_error_factor);
	get_number(c, f[D_LAT_FACTOR], where, 1, false, 1000, &d->max_latency_factor);
	if (bad)
		return;
	if (strcmp(d->strategy, "rolling") == 0 && d->max_surge + d->max_unavailable == 0)
		ctx_fail(c, df->value,
			 "'deploy'%s: 'max_surge' and 'max_unavailable' are both 0, so a rolling "
			 "deploy could never progress; set one of them above 0",
			 of);
	/* A new instance counts once it has been ready for min_healthy, so a
	 * deadline no longer than that fails every rollout but the first. */
	if (d->healthy_deadline_ms <= d->min_healthy_ms && !c->stored) {
		char dl[32], mh[32];
		duration_format(d->healthy_deadline_ms, dl, sizeof(dl));
		duration_format(d->min_healthy_ms, mh, sizeof(mh));
		ctx_fail(c, f[D_DEADLINE] ? f[D_DEADLINE]->value : f[D_MIN_HEALTHY]->value,
			 "'healthy_deadline' (%s)%s must be longer than 'min_healthy' (%s%s): a new "
			 "instance counts only once it has been healthy that long",
			 dl, where, mh, f[D_MIN_HEALTHY] ? "" : ", the default");
	}
	if (strcmp(d->strategy, "canary") == 0 && d->canary == 0)
		ctx_fail(c, f[D_CANARY] ? f[D_CANARY]->value : df->value,
			 "'canary'%s must be at least 1 for the canary strategy", where);
}

/* ------------------------------------------------------------ autoscale */

static const char *const autoscale_keys[] = {"min", "max", "metric", "target", "panic_threshold"};
enum { A_MIN, A_MAX, A_METRIC, A_TARGET, A_PANIC, A_N };
static const char *const autoscale_metrics[] = {"rps", "cpu", "memory", "inflight", "p95"};

static void parse_autoscale(struct ctx *c, const struct yaml_pair *af, const char *of,
			    struct spec_autoscale *a)
{
	if (!want_mapping(c, af, of, "a mapping with 'max', 'metric' and 'target'"))
		return;
	const char *where = ctx_fmt(c, " in 'autoscale'%s", of);
	const struct yaml_pair *f[A_N];
	walk_fields(c, af->value, where, autoscale_keys, A_N, f);
	a->enabled = true;
	a->min = 1;
	static const char *const required[] = {"max", "metric", "target"};
	for (size_t i = 0; i < ARRAY_SIZE(required); i++)
		if (!f[A_MAX + i])
			ctx_fail(c, af->value, "missing required key '%s'%s", required[i], where);

	bool min_ok = !f[A_MIN] || get_int(c, f[A_MIN], where, 0, SPEC_MAX_INSTANCES, &a->min);
	bool max_ok = get_int(c, f[A_MAX], where, 1, SPEC_MAX_INSTANCES, &a->max);
	const char *metric;
	if (get_choice(c, f[A_METRIC], where, autoscale_metrics, ARRAY_SIZE(autoscale_metrics),
		       &metric))
		a->metric = xstrdup(metric);
	get_number(c, f[A_TARGET], where, 0, true, HUGE_VAL, &a->target);
	a->panic_threshold = SPEC_PANIC_THRESHOLD;
	if (f[A_PANIC])
		get_number(c, f[A_PANIC], where, 1, true, 100, &a->panic_threshold);
	if (min_ok && max_ok && a->min > a->max)
		ctx_fail(c, f[A_MIN] ? f[A_MIN]->value : af->value,
			 "'min' (%d)%s is greater than 'max' (%d)", a->min, where, a->max);
}

/* -------------------------------------------------------------- process */

static const char *const process_keys[] = {
	"command", "instances", "env",    "health", "resources", "stop_timeout",
	"restart", "routes",    "deploy", "autoscale", "balance", "hash_on"};
enum { P_COMMAND, P_INSTANCES, P_ENV, P_HEALTH, P_RESOURCES, P_STOP, P_RESTART, P_ROUTES,
       P_DEPLOY, P_AUTOSCALE, P_BALANCE, P_HASH_ON, P_N };
static const char *const restarts[] = {"always", "on-failure", "never"};
static const char *const balances[] = {"p2c", "round-robin", "hash"};

static void parse_process(struct ctx *c, const struct yaml_pair *pf, struct spec_process *p)
{
	const struct yaml_value *k = pf->key, *v = pf->value;
	p->name = xstrdup(k->str);
	p->line = k->line;
	p->instances = 1;
	p->restart = SPEC_RESTART_ALWAYS;
	p->stop_timeout_ms = 30000;
	health_defaults(&p->health);
	deploy_defaults(&p->deploy);

	const char *shown = ctx_showv(c, k);
	const char *why = name_problem(c, k->str, k->len);
	if (!why && strlen(k->str) != k->len)
		why = "it contains a NUL character";
	if (why)
		ctx_fail(c, k, "invalid process name '%s': %s (%s)", shown, why, NAME_RULES);
	const char *of = ctx_fmt(c, " of process '%s'", shown);
	const char *in = ctx_fmt(c, " in process '%s'", shown);

	if (yaml_value_is_null(v)) {
		ctx_fail(c, k, "process '%s' has no settings: it needs at least a 'command'", shown);
		return;
	}
	if (v->kind != YAML_VALUE_MAPPING) {
		if (v->kind == YAML_VALUE_SCALAR)
			ctx_fail(c, v,
				 "process '%s' must be a mapping, found %s (write "
				 "'%s: {command: ...}')",
				 shown, ctx_found(c, v), shown);
		else
			ctx_fail(c, v, "process '%s' must be a mapping, found %s", shown,
				 ctx_found(c, v));
		return;
	}
	const struct yaml_pair *f[P_N];
	walk_fields(c, v, in, process_keys, P_N, f);

	if (!f[P_COMMAND])
		ctx_fail(c, k, "missing required key 'command'%s", in);
	else
		get_string(c, f[P_COMMAND], in, &p->command);
	get_int(c, f[P_INSTANCES], in, 0, SPEC_MAX_INSTANCES, &p->instances);
	if (f[P_ENV])
		parse_env(c, f[P_ENV], of, &p->env, &p->n_env);
	if (f[P_HEALTH])
		parse_health(c, f[P_HEALTH], of, &p->health);
	if (f[P_RESOURCES])
		parse_resources(c, f[P_RESOURCES], of, &p->resources);
	get_duration(c, f[P_STOP], in, 0, &p->stop_timeout_ms);
	const char *restart;
	if (get_choice(c, f[P_RESTART], in, restarts, ARRAY_SIZE(restarts), &restart))
		p->restart = restart == restarts[0]   ? SPEC_RESTART_ALWAYS
			     : restart == restarts[1] ? SPEC_RESTART_ON_FAILURE
						      : SPEC_RESTART_NEVER;
	if (f[P_ROUTES])
		parse_routes(c, f[P_ROUTES], of, p);
	if (f[P_DEPLOY])
		parse_deploy(c, f[P_DEPLOY], of, &p->deploy);
	if (f[P_AUTOSCALE])
		parse_autoscale(c, f[P_AUTOSCALE], of, &p->autoscale);
	const char *balance;
	if (get_choice(c, f[P_BALANCE], in, balances, ARRAY_SIZE(balances), &balance))
		p->balance = balance == balances[0]   ? SPEC_BALANCE_P2C
			     : balance == balances[1] ? SPEC_BALANCE_ROUND_ROBIN
						      : SPEC_BALANCE_HASH;
	if (get_string(c, f[P_HASH_ON], in, &p->hash_on)) {
		const char *h = p->hash_on;
		const char *name = str_starts_with(h, "header:") ? h + 7 : str_starts_with(h, "cookie:") ? h + 7 : NULL;
		if (!name || !*name || strpbrk(name, " \t\r\n:;,=\"") != NULL)
			ctx_fail(c, f[P_HASH_ON]->value, "invalid 'hash_on'%s: found %s (write 'header:NAME' or 'cookie:NAME')",
				 in, ctx_found(c, f[P_HASH_ON]->value));
	}
	if (p->balance == SPEC_BALANCE_HASH && !f[P_HASH_ON])
		ctx_fail(c, f[P_BALANCE]->value, "'balance: hash'%s needs 'hash_on: header:NAME' or 'hash_on: cookie:NAME'", in);
	else if (f[P_HASH_ON] && p->balance != SPEC_BALANCE_HASH)
		ctx_fail(c, f[P_HASH_ON]->key, "'hash_on'%s only applies with 'balance: hash'", in);
}

static void parse_processes(struct ctx *c, const struct yaml_pair *pf, struct spec *s)
{
	const struct yaml_value *m = pf->value;
	if (yaml_value_is_null(m) || (m->kind == YAML_VALUE_MAPPING && m->n_pairs == 0)) {
		ctx_fail(c, pf->key, "'processes' is empty: declare at least one process");
		return;
	}
	if (m->kind != YAML_VALUE_MAPPING) {
		ctx_fail(c, m, "'processes' must be a mapping of process names to settings, found %s",
			 ctx_found(c, m));
		return;
	}
	bool *skip = check_keys(c, m, "process", "");
	size_t n = 0;
	for (size_t i = 0; i < m->n_pairs; i++)
		n += !skip[i];
	if (n > SPEC_MAX_PROCESSES) {
		ctx_fail(c, m, "'processes' declares %zu processes; the limit is %d", n,
			 SPEC_MAX_PROCESSES);
		free(skip);
		return;
	}
	s->procs = xcalloc(n ? n : 1, sizeof(*s->procs));
	for (size_t i = 0; i < m->n_pairs; i++)
		if (!skip[i])
			parse_process(c, &m->pairs[i], &s->procs[s->n_procs++]);
	check_route_conflicts(c, s);
	free(skip);
}

/* --------------------------------------------------------------- alerts */

static const char *const alert_keys[] = {"name",   "metric", "op",    "value",
					 "for",    "severity", "fn",  "window",
					 "match",  "keep_firing_for", "summary", "description"};
enum { AL_NAME, AL_METRIC, AL_OP, AL_VALUE, AL_FOR, AL_SEVERITY, AL_FN, AL_WINDOW, AL_MATCH,
       AL_KEEP, AL_SUMMARY, AL_DESCRIPTION, AL_N };
const char *const spec_alert_metrics[] = {
	"http_requests_per_second", "http_5xx_per_second", "http_5xx_ratio",
	"http_p50_seconds",         "http_p90_seconds",    "http_p95_seconds",
	"http_p99_seconds",         "http_requests_in_flight", "instances_ready",
	"instance_memory_bytes",    "instance_memory_ratio",   "instance_cpu_ratio",
	"instance_restarts_per_second"};
const size_t spec_n_alert_metrics = ARRAY_SIZE(spec_alert_metrics);
static const char *const alert_fns[] = {"raw", "rate", "avg", "min", "max", "sum",
					"p50", "p90", "p95", "p99"};
/* "==" first: it is the likeliest meaning of a lone "=". */
static const char *const alert_ops[] = {"==", "!=", ">", ">=", "<", "<="};
static const char *const severities[] = {"info", "warning", "critical"};

struct alert_dup_arg {
	struct ctx *c;
	const struct yaml_value **at;
};

static void alert_dup(void *arg, size_t idx, size_t first_idx)
{
	struct alert_dup_arg *a = arg;
	ctx_fail(a->c, a->at[idx], "duplicate alert name '%s' (first at %d:%d)",
		 ctx_showv(a->c, a->at[idx]), a->at[first_idx]->line, a->at[first_idx]->col);
}

/* match: {label: value, ...}: exact label matchers. */
static void parse_match(struct ctx *c, const struct yaml_pair *f, const char *where,
			struct spec_alert *a)
{
	if (!want_mapping(c, f, where, "a mapping of label names to values"))
		return;
	const struct yaml_value *m = f->value;
	const char *in = ctx_fmt(c, " in 'match'%s", where);
	if (m->kind != YAML_VALUE_MAPPING) {
		ctx_fail(c, m, "'match'%s must be a mapping of label names to values, found %s",
			 where, ctx_found(c, m));
		return;
	}
	bool *skip = check_keys(c, m, "label", in);
	a->match = xcalloc(m->n_pairs ? m->n_pairs : 1, sizeof(*a->match));
	for (size_t i = 0; i < m->n_pairs; i++) {
		const struct yaml_value *k = m->pairs[i].key, *v = m->pairs[i].value;
		if (skip[i])
			continue;
		if (!valid_env_name(k->str, k->len) || str_starts_with(k->str, "__")) {
			ctx_fail(c, k, "invalid label name '%s'%s: use letters, digits and '_', not "
				 "starting with a digit or '__'", ctx_showv(c, k), in);
			continue;
		}
		if (v->kind != YAML_VALUE_SCALAR || yaml_value_is_null(v) || strlen(v->str) != v->len) {
			ctx_fail(c, yaml_value_is_null(v) ? k : v, "label '%s'%s must be a string, found %s",
				 ctx_showv(c, k), in, ctx_found(c, v));
			continue;
		}
		if (!strcmp(k->str, "app") && !c->stored) {
			/* app="THIS APP" is implied: another value could never match. */
			ctx_fail(c, k, "label 'app'%s is implied (a spec's alerts see only its own app's "
				 "series): leave it out", in);
			continue;
		}
		a->match[a->n_match].key = xstrdup(k->str);
		a->match[a->n_match].value = xstrdup(v->str);
		a->n_match++;
	}
	free(skip);
}

/* A paasops_* series with its function: a name the metrics know, and a
 * function it can have a value for (metrics_name_check). The problem is
 * shown at 'fn' when it is the function's. */
static void check_series(struct ctx *c, const struct yaml_pair *metric, const struct yaml_pair *fn,
			 const char *where, const struct spec_alert *a)
{
	enum metrics_fn f = METRICS_FN_RAW;
	double q;
	if (c->stored || (a->fn && metrics_fn_parse(a->fn, &f, &q) < 0))
		return; /* reported already, or stored before names were checked */
	char *err = NULL;
	if (metrics_name_check(a->metric, f, &err) < 0) {
		enum metrics_type t;
		bool known = metrics_family_type(a->metric, &t) == 0;
		ctx_fail(c, known && fn ? fn->value : metric->value, "'%s'%s: %s",
			 known && fn ? "fn" : "metric", where, err);
		free(err);
	}
}

static void parse_alerts(struct ctx *c, const struct yaml_pair *lf, struct spec *s)
{
	if (!want_list(c, lf, "", "a list of alert rules"))
		return;
	const struct yaml_value *l = lf->value;
	s->alerts = xcalloc(l->n_items ? l->n_items : 1, sizeof(*s->alerts));
	struct keyref *refs = xcalloc(l->n_items ? l->n_items : 1, sizeof(*refs));
	const struct yaml_value **at = xcalloc(l->n_items ? l->n_items : 1, sizeof(*at));
	size_t n_named = 0;
	for (size_t i = 0; i < l->n_items; i++) {
		const struct yaml_value *item = l->items[i];
		struct spec_alert *a = &s->alerts[s->n_alerts++];
		a->severity = xstrdup("warning");
		a->keep_firing_ms = -1;
		const char *choice;
		if (item->kind != YAML_VALUE_MAPPING) {
			ctx_fail(c, item, "alert %zu must be a mapping with 'name', 'metric', 'op' "
				 "and 'value', found %s",
				 i + 1, ctx_found(c, item));
			continue;
		}
		/* Name the alert in messages when it has a usable name. */
		const struct yaml_value *nv = yaml_value_get(item, "name");
		const char *where =
			nv && nv->kind == YAML_VALUE_SCALAR && !yaml_value_is_null(nv)
				? ctx_fmt(c, " in alert '%s'", ctx_showv(c, nv))
				: ctx_fmt(c, " in alert %zu", i + 1);
		const struct yaml_pair *f[AL_N];
		walk_fields(c, item, where, alert_keys, AL_N, f);
		if (get_string(c, f[AL_NAME], where, &a->name)) {
			const struct yaml_value *v = f[AL_NAME]->value;
			if (!valid_alert_name(v->str, v->len))
				ctx_fail(c, v,
					 "invalid alert name '%s': use 1-63 letters, digits, '_', "
					 "'.' and '-'",
					 ctx_showv(c, v));
			refs[n_named] = (struct keyref){v->str, v->len, n_named};
			at[n_named++] = v;
		}
		static const char *const required[] = {"name", "metric", "op", "value"};
		for (size_t r = 0; r < ARRAY_SIZE(required); r++)
			if (!f[AL_NAME + r])
				ctx_fail(c, item, "missing required key '%s'%s", required[r], where);
		bool app_metric = false, metric_ok = false;
		if (get_string(c, f[AL_METRIC], where, &a->metric)) {
			const struct yaml_value *v = f[AL_METRIC]->value;
			for (size_t k = 0; k < spec_n_alert_metrics && !app_metric; k++)
				app_metric = !strcmp(a->metric, spec_alert_metrics[k]);
			const char *hint = app_metric ? NULL
					   : suggest(a->metric, spec_alert_metrics, spec_n_alert_metrics);
			if (!valid_metric_name(v->str, v->len))
				ctx_fail(c, v,
					 "invalid metric name '%s'%s: use letters, digits, '_' and "
					 "':', not starting with a digit",
					 ctx_showv(c, v), where);
			else if (hint)
				ctx_fail(c, v, "unknown metric '%s'%s (did you mean '%s'?)",
					 ctx_showv(c, v), where, hint);
			else if (!app_metric && !str_starts_with(a->metric, "paasops_"))
				ctx_fail(c, v,
					 "unknown metric '%s'%s: use an app metric such as "
					 "http_p95_seconds or a paasops_* series (see doc/alerts.md)",
					 ctx_showv(c, v), where);
			else
				metric_ok = true;
		}
		if (f[AL_FN] && app_metric)
			ctx_fail(c, f[AL_FN]->key,
				 "'fn'%s cannot be used with the app metric '%s' (it has its own)",
				 where, a->metric);
		else if (get_choice(c, f[AL_FN], where, alert_fns, ARRAY_SIZE(alert_fns), &choice))
			a->fn = xstrdup(choice);
		if (metric_ok && !app_metric)
			check_series(c, f[AL_METRIC], a->fn ? f[AL_FN] : NULL, where, a);
		get_duration(c, f[AL_WINDOW], where, 1, &a->window_ms);
		get_duration(c, f[AL_KEEP], where, 0, &a->keep_firing_ms);
		if (f[AL_MATCH])
			parse_match(c, f[AL_MATCH], where, a);
		get_string(c, f[AL_SUMMARY], where, &a->summary);
		get_string(c, f[AL_DESCRIPTION], where, &a->description);
		if (f[AL_OP] && f[AL_OP]->value->kind == YAML_VALUE_SCALAR &&
		    !f[AL_OP]->value->plain && f[AL_OP]->value->len == 0) {
			/* op: > unquoted starts a folded block scalar: say so. */
			ctx_fail(c, at_value(f[AL_OP]),
				 "'op'%s is empty: quote the operator, e.g. op: \">\"", where);
		} else if (get_choice(c, f[AL_OP], where, alert_ops, ARRAY_SIZE(alert_ops),
				      &choice)) {
			a->op = xstrdup(choice);
		}
		get_number(c, f[AL_VALUE], where, -HUGE_VAL, false, HUGE_VAL, &a->value);
		get_duration(c, f[AL_FOR], where, 0, &a->for_ms);
		if (get_choice(c, f[AL_SEVERITY], where, severities, ARRAY_SIZE(severities),
			       &choice)) {
			free(a->severity);
			a->severity = xstrdup(choice);
		}
	}
	struct alert_dup_arg arg = {c, at};
	find_duplicates(refs, n_named, alert_dup, &arg);
	free(refs);
	free(at);
}

/* ----------------------------------------------------------------- root */

static const char *const root_keys[] = {"app", "build", "release", "env", "processes", "alerts"};
enum { R_APP, R_BUILD, R_RELEASE, R_ENV, R_PROCESSES, R_ALERTS, R_N };

static void parse_root(struct ctx *c, const struct yaml_value *root, struct spec *s)
{
	if (yaml_value_is_null(root)) {
		ctx_fail(c, root, "the file is empty: expected a mapping with 'app' and 'processes'");
		return;
	}
	if (root->kind != YAML_VALUE_MAPPING) {
		ctx_fail(c, root,
			 "expected a mapping with 'app' and 'processes' at the top level, found %s",
			 ctx_found(c, root));
		return;
	}
	const struct yaml_pair *f[R_N];
	walk_fields(c, root, " at the top level", root_keys, R_N, f);

	if (!f[R_APP]) {
		ctx_fail(c, root, "missing required key 'app' (the app name)");
	} else if (get_string(c, f[R_APP], "", &s->app)) {
		const struct yaml_value *v = f[R_APP]->value;
		const char *why = name_problem(c, v->str, v->len);
		if (why)
			ctx_fail(c, v, "invalid app name '%s': %s (%s)", ctx_showv(c, v), why,
				 NAME_RULES);
	}
	get_string(c, f[R_BUILD], "", &s->build);
	get_string(c, f[R_RELEASE], "", &s->release);
	if (f[R_ENV])
		parse_env(c, f[R_ENV], "", &s->env, &s->n_env);
	if (!f[R_PROCESSES])
		ctx_fail(c, root, "missing required key 'processes'");
	else
		parse_processes(c, f[R_PROCESSES], s);
	if (f[R_ALERTS])
		parse_alerts(c, f[R_ALERTS], s);
}

/* ------------------------------------------------------------ public API */

static struct spec *parse(const char *buf, size_t len, const char *filename, bool stored, char **err)
{
	struct ctx c = {.file = filename ? filename : "paasops.yaml", .stored = stored};
	char *yerr = NULL;
	if (err)
		*err = NULL;
	if (len > SPEC_MAX_BYTES) {
		if (err)
			*err = xasprintf("%s:1:1: file is too large (%zu bytes; the limit is %d)",
					 c.file, len, SPEC_MAX_BYTES);
		return NULL;
	}
	struct yaml_value *root = yaml_value_load(buf ? buf : "", buf ? len : 0, c.file, &yerr);
	if (!root) {
		if (err)
			*err = yerr;
		else
			free(yerr);
		return NULL;
	}
	struct spec *s = xcalloc(1, sizeof(*s));
	parse_root(&c, root, s);
	yaml_value_free(root);
	if (c.n_errs || c.dropped) {
		if (err)
			*err = ctx_errors(&c);
		spec_free(s);
		s = NULL;
	}
	ctx_release(&c);
	return s;
}

struct spec *spec_parse(const char *buf, size_t len, const char *filename, char **err)
{
	return parse(buf, len, filename, false, err);
}

struct spec *spec_parse_stored(const char *buf, size_t len, const char *filename, char **err)
{
	return parse(buf, len, filename, true, err);
}

struct spec *spec_parse_file(const char *path, char **err)
{
	if (err)
		*err = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (err)
			*err = xasprintf("%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		if (err)
			*err = xasprintf("%s: not a regular file", path);
		close(fd);
		return NULL;
	}
	if (st.st_size > SPEC_MAX_BYTES) {
		if (err)
			*err = xasprintf("%s:1:1: file is too large (%lld bytes; the limit is %d)",
					 path, (long long)st.st_size, SPEC_MAX_BYTES);
		close(fd);
		return NULL;
	}
	/* Read until EOF or one byte past the limit, so that a file that grew
	 * after fstat is refused by spec_parse too. */
	struct strbuf sb;
	strbuf_init(&sb, (size_t)st.st_size + 1);
	while (sb.len <= SPEC_MAX_BYTES) {
		strbuf_grow(&sb, 4096);
		ssize_t r = read(fd, sb.buf + sb.len, sb.alloc - sb.len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			if (err)
				*err = xasprintf("%s: cannot read: %s", path, strerror(errno));
			strbuf_release(&sb);
			close(fd);
			return NULL;
		}
		if (r == 0)
			break;
		sb.len += (size_t)r;
		sb.buf[sb.len] = '\0';
	}
	close(fd);
	struct spec *s = spec_parse(sb.buf, sb.len, path, err);
	strbuf_release(&sb);
	return s;
}

static void env_free(struct spec_env *env, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(env[i].key);
		free(env[i].value);
	}
	free(env);
}

void spec_free(struct spec *s)
{
	if (!s)
		return;
	free(s->app);
	free(s->build);
	free(s->release);
	env_free(s->env, s->n_env);
	for (size_t i = 0; i < s->n_procs; i++) {
		struct spec_process *p = &s->procs[i];
		free(p->name);
		free(p->command);
		free(p->hash_on);
		env_free(p->env, p->n_env);
		free(p->health.target);
		for (size_t j = 0; j < p->n_routes; j++) {
			free(p->routes[j].host);
			free(p->routes[j].path);
		}
		free(p->routes);
		free(p->deploy.strategy);
		free(p->autoscale.metric);
	}
	free(s->procs);
	for (size_t i = 0; i < s->n_alerts; i++) {
		free(s->alerts[i].name);
		free(s->alerts[i].metric);
		free(s->alerts[i].op);
		free(s->alerts[i].severity);
		free(s->alerts[i].fn);
		env_free(s->alerts[i].match, s->alerts[i].n_match);
		free(s->alerts[i].summary);
		free(s->alerts[i].description);
	}
	free(s->alerts);
	free(s);
}

const struct spec_process *spec_process(const struct spec *s, const char *name)
{
	for (size_t i = 0; s && name && i < s->n_procs; i++)
		if (strcmp(s->procs[i].name, name) == 0)
			return &s->procs[i];
	return NULL;
}

/* ----------------------------------------------------------------- JSON */

static struct json *env_to_json(const struct spec_env *env, size_t n)
{
	struct json *o = json_object();
	for (size_t i = 0; i < n; i++)
		json_set_str(o, env[i].key, env[i].value);
	return o;
}

static const char *restart_name(enum spec_restart r)
{
	return r == SPEC_RESTART_ON_FAILURE ? "on-failure" : r == SPEC_RESTART_NEVER ? "never"
										     : "always";
}

static struct json *health_to_json(const struct spec_health *h)
{
	if (h->kind == SPEC_HEALTH_NONE)
		return json_null();
	struct json *o = json_object();
	if (h->kind == SPEC_HEALTH_HTTP)
		json_set_str(o, "http", h->target);
	else if (h->kind == SPEC_HEALTH_TCP)
		json_set_bool(o, "tcp", true);
	else
		json_set_str(o, "cmd", h->target);
	json_set_int(o, "interval_ms", h->interval_ms);
	json_set_int(o, "timeout_ms", h->timeout_ms);
	json_set_int(o, "healthy", h->healthy);
	json_set_int(o, "unhealthy", h->unhealthy);
	json_set_int(o, "boot_deadline_ms", h->boot_deadline_ms);
	return o;
}

static struct json *process_to_json(const struct spec_process *p)
{
	struct json *o = json_object();
	json_set_str(o, "command", p->command);
	json_set_int(o, "instances", p->instances);
	json_set(o, "env", env_to_json(p->env, p->n_env));
	json_set(o, "health", health_to_json(&p->health));
	struct json *res = json_set(o, "resources", json_object());
	json_set_int(res, "memory", p->resources.memory_bytes);
	json_set_num(res, "cpu", p->resources.cpu);
	json_set_int(o, "stop_timeout_ms", p->stop_timeout_ms);
	json_set_str(o, "restart", restart_name(p->restart));
	struct json *routes = json_set(o, "routes", json_array());
	for (size_t i = 0; i < p->n_routes; i++) {
		struct json *r = json_append(routes, json_object());
		json_set_str(r, "host", p->routes[i].host);
		json_set_str(r, "path", p->routes[i].path);
		json_set_int(r, "max_body", p->routes[i].max_body);
		json_set_str(r, "https", https_modes[p->routes[i].https_redirect]);
	}
	json_set_str(o, "balance", balances[p->balance]);
	json_set_str(o, "hash_on", p->hash_on);
	const struct spec_deploy *d = &p->deploy;
	struct json *dj = json_set(o, "deploy", json_object());
	json_set_str(dj, "strategy", d->strategy);
	json_set_int(dj, "max_surge", d->max_surge);
	json_set_int(dj, "max_unavailable", d->max_unavailable);
	json_set_int(dj, "canary", d->canary);
	json_set_int(dj, "min_healthy_ms", d->min_healthy_ms);
	json_set_num(dj, "max_error_rate", d->max_error_rate);
	json_set_num(dj, "max_error_factor", d->max_error_factor);
	json_set_num(dj, "max_latency_factor", d->max_latency_factor);
	json_set_int(dj, "healthy_deadline_ms", d->healthy_deadline_ms);
	json_set_bool(dj, "auto_rollback", d->auto_rollback);
	json_set_bool(dj, "auto_promote", d->auto_promote);
	if (!p->autoscale.enabled) {
		json_set(o, "autoscale", json_null());
	} else {
		struct json *a = json_set(o, "autoscale", json_object());
		json_set_int(a, "min", p->autoscale.min);
		json_set_int(a, "max", p->autoscale.max);
		json_set_str(a, "metric", p->autoscale.metric);
		json_set_num(a, "target", p->autoscale.target);
		json_set_num(a, "panic_threshold", p->autoscale.panic_threshold);
	}
	return o;
}

struct json *spec_to_json(const struct spec *s)
{
	struct json *o = json_object();
	json_set_str(o, "app", s->app);
	json_set_str(o, "build", s->build);
	json_set_str(o, "release", s->release);
	json_set(o, "env", env_to_json(s->env, s->n_env));
	struct json *procs = json_set(o, "processes", json_object());
	for (size_t i = 0; i < s->n_procs; i++)
		json_set(procs, s->procs[i].name, process_to_json(&s->procs[i]));
	struct json *alerts = json_set(o, "alerts", json_array());
	for (size_t i = 0; i < s->n_alerts; i++) {
		const struct spec_alert *a = &s->alerts[i];
		struct json *aj = json_append(alerts, json_object());
		json_set_str(aj, "name", a->name);
		json_set_str(aj, "metric", a->metric);
		json_set_str(aj, "op", a->op);
		json_set_num(aj, "value", a->value);
		json_set_int(aj, "for_ms", a->for_ms);
		json_set_str(aj, "severity", a->severity);
		json_set_str(aj, "fn", a->fn);
		json_set_int(aj, "window_ms", a->window_ms);
		json_set(aj, "match", env_to_json(a->match, a->n_match));
		if (a->keep_firing_ms >= 0)
			json_set_int(aj, "keep_firing_for_ms", a->keep_firing_ms);
		else
			json_set(aj, "keep_firing_for_ms", json_null());
		json_set_str(aj, "summary", a->summary);
		json_set_str(aj, "description", a->description);
	}
	return o;
}
