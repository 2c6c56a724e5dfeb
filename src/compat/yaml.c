/* yaml.c: the libyaml adapter (see yaml.h). It drives libyaml's event parser
 * rather than its document loader so that anchors, aliases, depth and node
 * count are checked as events arrive, before anything is expanded or built. */
#include "compat/yaml.h"
#include "core/util.h"
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define TAG_PREFIX "tag:yaml.org,2002:"

struct loader {
	yaml_parser_t parser;
	const char *file;
	const char *buf;
	size_t len;
	size_t nodes;
	char *err; /* first error only: loading stops at it */
};

/* ---------------------------------------------------------------- errors */

static void loader_fail(struct loader *L, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void loader_fail(struct loader *L, int line, int col, const char *fmt, ...)
{
	if (L->err)
		return;
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	L->err = xasprintf("%s:%d:%d: %s", L->file, line, col, msg);
	free(msg);
}

static int mark_line(yaml_mark_t m)
{
	return m.line >= (size_t)0x7fffffff ? 0x7fffffff : (int)m.line + 1;
}

static int mark_col(yaml_mark_t m)
{
	return m.column >= (size_t)0x7fffffff ? 0x7fffffff : (int)m.column + 1;
}

/* Line and column (in characters) of a byte offset, for reader errors that
 * carry only an offset. */
static void offset_position(const char *buf, size_t len, size_t off, int *line, int *col)
{
	int l = 1, c = 1;
	if (off > len)
		off = len;
	for (size_t i = 0; i < off; i++) {
		unsigned char ch = (unsigned char)buf[i];
		if (ch == '\n') {
			l++;
			c = 1;
		} else if ((ch & 0xC0) != 0x80) {
			c++;
		}
	}
	*line = l;
	*col = c;
}

/* Turns libyaml's error state into the loader's message. */
static void loader_fail_parser(struct loader *L)
{
	yaml_parser_t *p = &L->parser;
	const char *problem = p->problem ? p->problem : "invalid YAML";
	int line, col;

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		loader_fail(L, 1, 1, "out of memory while parsing YAML");
		break;
	case YAML_READER_ERROR:
		offset_position(L->buf, L->len, p->problem_offset, &line, &col);
		if (p->problem_value >= 0)
			loader_fail(L, line, col, "%s (byte 0x%02X); the file must be UTF-8 text",
				    problem, (unsigned)p->problem_value);
		else
			loader_fail(L, line, col, "%s; the file must be UTF-8 text", problem);
		break;
	default: {
		/* The two usual causes of "cannot start any token", said plainly. */
		const char *hint = "";
		size_t at = p->problem_mark.index;
		if (at < L->len && strstr(problem, "cannot start any token")) {
			char ch = L->buf[at];
			if (ch == '\t')
				hint = "; YAML indents with spaces, not tabs";
			else if (ch == '>' || ch == '<' || ch == '|' || ch == '%' || ch == '@' || ch == '`')
				hint = "; quote a value that starts with this character (op: \">\")";
		}
		if (p->context)
			loader_fail(L, mark_line(p->problem_mark), mark_col(p->problem_mark),
				    "%s (%s at %d:%d)%s", problem, p->context,
				    mark_line(p->context_mark), mark_col(p->context_mark), hint);
		else
			loader_fail(L, mark_line(p->problem_mark), mark_col(p->problem_mark), "%s%s",
				    problem, hint);
		break;
	}
	}
}

static int loader_next(struct loader *L, yaml_event_t *ev)
{
	if (!yaml_parser_parse(&L->parser, ev)) {
		loader_fail_parser(L);
		return -1;
	}
	return 0;
}

/* ----------------------------------------------------------------- nodes */

void yaml_value_free(struct yaml_value *v)
{
	if (!v)
		return;
	free(v->str);
	for (size_t i = 0; i < v->n_items; i++)
		yaml_value_free(v->items[i]);
	free(v->items);
	for (size_t i = 0; i < v->n_pairs; i++) {
		yaml_value_free(v->pairs[i].key);
		yaml_value_free(v->pairs[i].value);
	}
	free(v->pairs);
	free(v);
}

static struct yaml_value *loader_new(struct loader *L, enum yaml_value_kind kind, yaml_mark_t m)
{
	if (++L->nodes > YAML_MAX_NODES) {
		loader_fail(L, mark_line(m), mark_col(m), "document has more than %d nodes",
			    YAML_MAX_NODES);
		return NULL;
	}
	struct yaml_value *v = xcalloc(1, sizeof(*v));
	v->kind = kind;
	v->line = mark_line(m);
	v->col = mark_col(m);
	return v;
}

/* Checks an anchor and a tag. Sets *is_str when the tag forces a string. */
static int loader_check_props(struct loader *L, yaml_mark_t m, const yaml_char_t *anchor,
			      const yaml_char_t *tag, bool *is_str)
{
	if (anchor) {
		loader_fail(L, mark_line(m), mark_col(m), "anchors and aliases are not supported");
		return -1;
	}
	*is_str = false;
	if (!tag)
		return 0;
	const char *t = (const char *)tag;
	if (strcmp(t, "!") == 0 || strcmp(t, TAG_PREFIX "str") == 0) {
		*is_str = true;
		return 0;
	}
	if (str_starts_with(t, TAG_PREFIX))
		return 0;
	loader_fail(L, mark_line(m), mark_col(m), "tags are not supported ('%.40s')", t);
	return -1;
}

static struct yaml_value *loader_node(struct loader *L, yaml_event_t *ev, int depth);

/* Reads children until the end event of a collection that started with
 * ev; items go to v->items (sequence) or v->pairs (mapping). */
static int loader_children(struct loader *L, struct yaml_value *v, int depth)
{
	size_t alloc = 0;
	yaml_event_type_t end = v->kind == YAML_VALUE_MAPPING ? YAML_MAPPING_END_EVENT
							      : YAML_SEQUENCE_END_EVENT;
	for (;;) {
		yaml_event_t ev;
		if (loader_next(L, &ev) < 0)
			return -1;
		if (ev.type == end) {
			yaml_event_delete(&ev);
			return 0;
		}
		struct yaml_value *child = loader_node(L, &ev, depth + 1);
		yaml_event_delete(&ev);
		if (!child)
			return -1;
		if (v->kind == YAML_VALUE_SEQUENCE) {
			v->items = xgrow(v->items, sizeof(*v->items), v->n_items + 1, &alloc);
			v->items[v->n_items++] = child;
			continue;
		}
		/* A mapping: child is the key, the next node its value. */
		v->pairs = xgrow(v->pairs, sizeof(*v->pairs), v->n_pairs + 1, &alloc);
		v->pairs[v->n_pairs].key = child;
		v->pairs[v->n_pairs].value = NULL;
		v->n_pairs++;
		if (loader_next(L, &ev) < 0)
			return -1;
		struct yaml_value *val = loader_node(L, &ev, depth + 1);
		yaml_event_delete(&ev);
		if (!val)
			return -1;
		v->pairs[v->n_pairs - 1].value = val;
	}
}

/* Builds the node that starts with ev (borrowed; the caller deletes it). */
static struct yaml_value *loader_node(struct loader *L, yaml_event_t *ev, int depth)
{
	yaml_mark_t m = ev->start_mark;
	struct yaml_value *v;
	bool is_str;

	switch (ev->type) {
	case YAML_ALIAS_EVENT:
		loader_fail(L, mark_line(m), mark_col(m), "anchors and aliases are not supported");
		return NULL;
	case YAML_SCALAR_EVENT:
		if (loader_check_props(L, m, ev->data.scalar.anchor, ev->data.scalar.tag,
				       &is_str) < 0)
			return NULL;
		v = loader_new(L, YAML_VALUE_SCALAR, m);
		if (!v)
			return NULL;
		v->len = ev->data.scalar.length;
		v->str = xstrndup((const char *)ev->data.scalar.value, v->len);
		v->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !is_str;
		return v;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
		const yaml_char_t *anchor =
			seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor;
		const yaml_char_t *tag = seq ? ev->data.sequence_start.tag : ev->data.mapping_start.tag;
		if (loader_check_props(L, m, anchor, tag, &is_str) < 0)
			return NULL;
		if (depth >= YAML_MAX_DEPTH) {
			loader_fail(L, mark_line(m), mark_col(m),
				    "nesting is deeper than %d levels", YAML_MAX_DEPTH);
			return NULL;
		}
		v = loader_new(L, seq ? YAML_VALUE_SEQUENCE : YAML_VALUE_MAPPING, m);
		if (!v)
			return NULL;
		if (loader_children(L, v, depth) < 0) {
			yaml_value_free(v);
			return NULL;
		}
		return v;
	}
	default:
		loader_fail(L, mark_line(m), mark_col(m), "unexpected YAML event");
		return NULL;
	}
}

/* Expects an event of type want; fails with what otherwise. */
static int loader_expect(struct loader *L, yaml_event_type_t want, const char *what)
{
	yaml_event_t ev;
	if (loader_next(L, &ev) < 0)
		return -1;
	int ok = ev.type == want;
	if (!ok)
		loader_fail(L, mark_line(ev.start_mark), mark_col(ev.start_mark), "%s", what);
	yaml_event_delete(&ev);
	return ok ? 0 : -1;
}

static struct yaml_value *loader_stream(struct loader *L)
{
	yaml_event_t ev;
	if (loader_expect(L, YAML_STREAM_START_EVENT, "expected the start of a YAML stream") < 0)
		return NULL;
	if (loader_next(L, &ev) < 0)
		return NULL;
	if (ev.type == YAML_STREAM_END_EVENT) {
		/* No document at all (empty file, only comments): null. */
		yaml_event_delete(&ev);
		struct yaml_value *v = xcalloc(1, sizeof(*v));
		v->kind = YAML_VALUE_SCALAR;
		v->line = v->col = 1;
		v->str = xstrdup("");
		v->plain = true;
		return v;
	}
	yaml_event_delete(&ev);

	if (loader_next(L, &ev) < 0)
		return NULL;
	struct yaml_value *root = loader_node(L, &ev, 0);
	yaml_event_delete(&ev);
	if (!root)
		return NULL;
	if (loader_expect(L, YAML_DOCUMENT_END_EVENT, "expected the end of the document") < 0)
		goto fail;
	if (loader_next(L, &ev) < 0)
		goto fail;
	if (ev.type != YAML_STREAM_END_EVENT) {
		loader_fail(L, mark_line(ev.start_mark), mark_col(ev.start_mark),
			    "multiple documents are not supported");
		yaml_event_delete(&ev);
		goto fail;
	}
	yaml_event_delete(&ev);
	return root;
fail:
	yaml_value_free(root);
	return NULL;
}

struct yaml_value *yaml_value_load(const char *buf, size_t len, const char *filename,
				   char **err)
{
	struct loader L = {.file = filename ? filename : "<input>", .buf = buf, .len = len};

	/* libyaml reads a NUL as the end of its buffer in places; a text
	 * config never holds one, so say what it most likely is. */
	const char *nul = memchr(buf, '\0', len);
	if (nul) {
		int line, col;
		offset_position(buf, len, (size_t)(nul - buf), &line, &col);
		loader_fail(&L, line, col, "file contains a NUL byte (binary data?)");
		*err = L.err;
		return NULL;
	}
	if (!yaml_parser_initialize(&L.parser)) {
		*err = xasprintf("%s:1:1: out of memory while parsing YAML", L.file);
		return NULL;
	}
	yaml_parser_set_input_string(&L.parser, (const unsigned char *)buf, len);
	struct yaml_value *root = loader_stream(&L);
	yaml_parser_delete(&L.parser);
	if (!root) {
		if (!L.err)
			L.err = xasprintf("%s:1:1: invalid YAML", L.file);
		*err = L.err;
		return NULL;
	}
	return root;
}

/* ------------------------------------------------------------- accessors */

bool yaml_value_is_null(const struct yaml_value *v)
{
	if (!v || v->kind != YAML_VALUE_SCALAR || !v->plain)
		return false;
	return v->len == 0 || strcmp(v->str, "~") == 0 || strcmp(v->str, "null") == 0 ||
	       strcmp(v->str, "Null") == 0 || strcmp(v->str, "NULL") == 0;
}

const struct yaml_value *yaml_value_get(const struct yaml_value *map, const char *key)
{
	if (!map || map->kind != YAML_VALUE_MAPPING)
		return NULL;
	for (size_t i = 0; i < map->n_pairs; i++) {
		const struct yaml_value *k = map->pairs[i].key;
		if (k->kind == YAML_VALUE_SCALAR && k->len == strlen(key) &&
		    memcmp(k->str, key, k->len) == 0)
			return map->pairs[i].value;
	}
	return NULL;
}

const char *yaml_value_kind_name(enum yaml_value_kind kind)
{
	switch (kind) {
	case YAML_VALUE_MAPPING:
		return "a mapping";
	case YAML_VALUE_SEQUENCE:
		return "a list";
	default:
		return "a string";
	}
}
