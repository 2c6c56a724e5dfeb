/* util.h: allocation wrappers that abort on out-of-memory, and small string
 * helpers every module uses. Callers never check these for NULL. */
#ifndef PAASOPS_UTIL_H
#define PAASOPS_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdarg.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Formats into a new string; caller frees. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap);

/* Grows *arr (element size elem) so that it can hold at least need elements. */
void *xgrow(void *arr, size_t elem, size_t need, size_t *alloc);

bool str_starts_with(const char *s, const char *prefix);
bool str_ends_with(const char *s, const char *suffix);
bool str_eq(const char *a, const char *b); /* NULL-safe */
/* Copies at most size-1 bytes and always terminates; returns strlen(src). */
size_t strlcpy_s(char *dst, const char *src, size_t size);

/* Levenshtein distance between two short strings (for "did you mean"). */
size_t str_edit_distance(const char *a, const char *b);
/* Returns the candidate closest to word when close enough to be a likely
 * typo, else NULL. Borrowed from candidates. */
const char *str_suggest(const char *word, const char *const *candidates, size_t n);

/* Parses a decimal int64 in full; 0 or -EINVAL/-ERANGE. */
int str_to_i64(const char *s, int64_t *out);

/* Length of the valid UTF-8 sequence at s (n > 0 bytes left), or 0 when
 * the bytes there are not one (or it is cut short by n). */
size_t utf8_seq(const unsigned char *s, size_t n);

#endif
