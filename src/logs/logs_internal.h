/* logs_internal.h: what the logs module's files share with each other and
 * with tests/unit/test_logs.c. Not for other modules: they use logs.h.
 *
 * The module is split by noun:
 *   logs_parse.c  lines → level, lifted message and fields; tokens and their
 *                 hashes; escaping for output
 *   logs_chunk.c  the storage unit: a compressed column-wise block of one
 *                 app's lines with a split-block bloom filter of its tokens
 *   logs_query.c  the filter and the query language (words, "phrases",
 *                 AND/OR/NOT, field:value), evaluated per chunk and per line
 *   logs_writer.c the writer thread: batches in, chunks out, retention
 *   logs.c        ingest on the loop (rate limits), queries on the thread
 *                 pool, live tails, stats
 *   logs_drain.c  forwarding to syslog (RFC 5424/TCP) and HTTP (NDJSON)
 *
 * Threads: ingest, tails and drains run on the control loop; the writer
 * thread owns the write connection and the open chunks; queries run on the
 * libuv thread pool with their own read connections. They meet only at the
 * locked queues in struct logs and at the bloom cache (its own lock). */
#ifndef PAASOPS_LOGS_INTERNAL_H
#define PAASOPS_LOGS_INTERNAL_H
#include "core/strbuf.h"
#include "logs/logs.h"
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct gzip_deflater;
struct json;
struct store_logs;

/* ------------------------------------------------------------------------ */
/* Lines and their parts (logs_parse.c)                                     */

enum logs_level {
	LOGS_LEVEL_NONE = 0, /* not recognised */
	LOGS_LEVEL_TRACE,
	LOGS_LEVEL_DEBUG,
	LOGS_LEVEL_INFO,
	LOGS_LEVEL_WARN,
	LOGS_LEVEL_ERROR,
	LOGS_LEVEL_FATAL,
	LOGS_NLEVELS
};

#define LOGS_NSTREAMS 6 /* stdout, stderr, router, build, release, run */

const char *logs_level_name(int level);   /* "" for NONE */
const char *logs_stream_name(int stream); /* "stdout", ... */
/* Level from a word ("WARNING", "err", "Fatal", "50" as pino's numbers);
 * LOGS_LEVEL_NONE when it is not one. */
int logs_level_parse(const char *s, size_t n);

/* A lifted field: key and value as offsets into the parse's scratch. */
struct logs_field {
	uint32_t key, klen, val, vlen;
};

#define LOGS_MAX_FIELDS 64
#define LOGS_MAX_DEPTH 4

/* What a line says about itself. JSON objects: scalar members (nested
 * objects flattened with dots, to LOGS_MAX_DEPTH) become fields; logfmt:
 * every key=value or key="quoted value" that starts a word. level, lvl,
 * severity, loglevel, levelname or log.level give the level; msg or message
 * the message. Plain text: a level word (ERROR, [warn], Info:) among the
 * first words. Router lines: the level from their status. */
struct logs_parsed {
	int level;
	bool json, logfmt;
	bool has_msg;
	uint32_t msg, msg_len; /* offsets into scratch when has_msg */
	struct logs_field fields[LOGS_MAX_FIELDS];
	size_t n_fields;
	struct strbuf scratch;
};

void logs_parsed_init(struct logs_parsed *p);
void logs_parsed_release(struct logs_parsed *p);
/* Parses one line (any bytes). Reuses p's memory. */
void logs_parse(struct logs_parsed *p, const char *text, size_t len, int stream);
static inline const char *logs_field_key(const struct logs_parsed *p, const struct logs_field *f)
{
	return p->scratch.buf + f->key;
}
static inline const char *logs_field_val(const struct logs_parsed *p, const struct logs_field *f)
{
	return p->scratch.buf + f->val;
}

/* Word bytes: ASCII letters, digits, '_' and every byte >= 0x80. */
extern const uint8_t logs_word_char[256];
static inline char logs_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

/* Hashes: every token, field and attribute goes into a chunk's bloom filter
 * as one 64-bit hash. Words are lowercased (ASCII); fields and attributes
 * carry a kind byte so that they never collide with words. */
uint64_t logs_hash_word(const char *s, size_t n);
uint64_t logs_hash_field(const char *key, size_t klen, const char *val, size_t vlen);
/* kind: 'a' app, 'p' process, 'i' instance, 'r' release. */
uint64_t logs_hash_attr(char kind, const char *val, size_t vlen);

typedef void (*logs_token_cb)(void *ctx, uint64_t hash);
/* Calls cb with the hash of every word of the line (duplicates included). */
void logs_words(const char *s, size_t n, logs_token_cb cb, void *ctx);

/* Appends s as valid UTF-8 without NUL: valid sequences are copied, NUL
 * and every byte of an invalid sequence become the four characters \xNN. */
void logs_escape_utf8(struct strbuf *out, const char *s, size_t n);
/* Appends s for a terminal: like logs_escape_utf8, and control characters
 * (ESC, CR, BEL, ...; not TAB) become \xNN too, so that no line can move
 * the cursor or change colours. */
void logs_escape_tty(struct strbuf *out, const char *s, size_t n);

/* ------------------------------------------------------------------------ */
/* Bloom filters and hash sets (logs_chunk.c)                               */

/* A split-block bloom filter (32-byte blocks of eight 32-bit words, one bit
 * per word per key, as in Parquet): one cache line per lookup. */
struct logs_bloom {
	uint32_t nblocks;
	uint32_t *words; /* nblocks * 8 */
};

#define LOGS_BLOOM_BITS_PER_KEY 16

/* Sized for n keys at bits_per_key (at least one block). */
void logs_bloom_init(struct logs_bloom *b, size_t n, unsigned bits_per_key);
void logs_bloom_release(struct logs_bloom *b);
void logs_bloom_add(struct logs_bloom *b, uint64_t h);
/* words: nblocks * 8 words, as stored. */
bool logs_bloom_test(const uint32_t *words, uint32_t nblocks, uint64_t h);

/* A set of 64-bit hashes (open addressing), to count distinct keys before
 * sizing a bloom filter. */
struct logs_hset {
	uint64_t *slots;
	size_t cap, n;
	bool has_zero;
};
void logs_hset_init(struct logs_hset *s);
void logs_hset_release(struct logs_hset *s);
void logs_hset_clear(struct logs_hset *s);
void logs_hset_add(struct logs_hset *s, uint64_t h);
/* Makes room for n members without growing again. */
void logs_hset_reserve(struct logs_hset *s, size_t n);
/* Adds every member to b. */
void logs_hset_to_bloom(const struct logs_hset *s, struct logs_bloom *b);

/* ------------------------------------------------------------------------ */
/* Records and chunks (logs_chunk.c)                                        */

/* One line as stored. Strings are borrowed from whatever holds the record
 * (a batch, a builder or a decoded chunk). */
struct logs_rec {
	uint64_t seq;
	int64_t t_ns;
	int32_t release;
	uint8_t stream, level;
	const char *app, *process, *instance; /* process/instance "" when app-level */
	const char *text;
	uint32_t len;
};

/* The lines of one app that go into a chunk, in seq order. Their token
 * hashes are kept per segment: consecutive lines, distinct hashes once.
 * A segment ends after LOGS_BLOCK_BYTES of text or at logs_builder_cut, so
 * that a chunk written from a segment boundary gets its per-block filters
 * from the segments without tokenizing its lines again. */
struct logs_builder {
	struct logs_brec {
		uint64_t seq;
		int64_t t_ns;
		int32_t release;
		uint8_t stream, level;
		uint32_t proc, inst; /* dictionary indexes */
		uint64_t text;       /* offset into arena */
		uint32_t len;
	} *recs;
	size_t n, alloc;
	struct strbuf arena;
	char **dict; /* process and instance names */
	size_t n_dict, alloc_dict;
	uint64_t raw_bytes; /* sum of line lengths */
	/* Closed segments: recs [first, next segment's first), their distinct
	 * hashes at hashes[hoff, hoff + hn). */
	struct logs_seg {
		size_t first, hoff, hn;
		uint64_t raw;
	} *segs;
	size_t n_segs, alloc_segs;
	uint64_t *hashes;
	size_t n_hashes, alloc_hashes;
	/* The open segment: recs [cur_first, n). */
	struct logs_hset cur;
	size_t cur_first;
	uint64_t cur_raw;
};

/* Text per block of a chunk (a block is compressed on its own and has its
 * own filter: a query decompresses only the blocks that may match). */
#define LOGS_BLOCK_BYTES (8u << 10)
/* Block filters are tested only in chunks whose own filter passed. */
#define LOGS_BLOCK_BLOOM_BITS_PER_KEY 10

void logs_builder_init(struct logs_builder *b);
void logs_builder_release(struct logs_builder *b);
void logs_builder_reset(struct logs_builder *b);
/* Adds a copy of r; p is r's parse (its fields go into the set). */
void logs_builder_add(struct logs_builder *b, const struct logs_rec *r, const struct logs_parsed *p);
/* Ends the open segment (when it has lines): the next line starts one. */
void logs_builder_cut(struct logs_builder *b);
/* Keeps the first n records; returns the bytes of text dropped. A segment
 * cut by the truncation keeps the dropped lines' hashes (a bloom filter
 * may say too much). */
uint64_t logs_builder_truncate(struct logs_builder *b, size_t n);
/* Record k as a struct logs_rec (strings borrowed from b; app NULL). */
void logs_builder_get(const struct logs_builder *b, size_t k, struct logs_rec *out);

/* A chunk as written: metadata, bloom and stored body.
 *
 * Stored body: the magic "plb2", then (LEB128 varints) n_blocks and, per
 * block, n_lines, filter size in 32-byte bloom blocks and compressed size;
 * then every block's filter (words as in memory), then every block's
 * compressed data. A block's data is one gzip member of a block body:
 *   version(=1) n_lines n_dict {len bytes}*n_dict
 *   seq delta*n  time zigzag-delta*n  release*n  stream byte*n  level byte*n
 *   proc index*n  instance index*n  len*n  texts
 * Chunks written before blocks existed are one gzip member of one such
 * body (they read as one block without a filter). */
struct logs_chunk {
	uint64_t seq_min, seq_max;
	int64_t t_min, t_max;
	uint32_t n_lines;
	uint64_t raw_bytes;
	uint32_t levels, streams; /* bit masks of what occurs */
	struct logs_bloom bloom;
	struct strbuf data; /* the stored body */
};

/* Encodes records [from, to) of b (at least one; from at a segment
 * boundary: 0, or where logs_builder_cut was called) into c, which the
 * caller releases with logs_chunk_release. app names the app for the
 * attribute tokens. z compresses the blocks. Every word of every line, every
 * lifted field, and the app, process, instance and release attributes go
 * into the chunk's bloom filter; each block's filter has its lines' words,
 * fields, processes, instances and releases. */
void logs_chunk_encode(const struct logs_builder *b, size_t from, size_t to, const char *app,
		       struct gzip_deflater *z, struct logs_chunk *c);
void logs_chunk_release(struct logs_chunk *c);

/* A decoded chunk body. */
struct logs_view {
	struct strbuf body;
	size_t n;
	struct logs_vrec {
		uint64_t seq;
		int64_t t_ns;
		int32_t release;
		uint8_t stream, level;
		uint32_t proc, inst;
		uint32_t len;
		const char *text; /* into body */
	} *recs;
	const char **dict; /* into body, NUL-terminated copies in strs */
	size_t n_dict;
	struct strbuf strs;
};

void logs_view_init(struct logs_view *v);
void logs_view_release(struct logs_view *v);
/* Decompresses and decodes one block's data (a struct logs_block's data).
 * 0, or -EINVAL for damaged data. */
int logs_view_decode(struct logs_view *v, const void *data, size_t len);

/* A stored body, opened without decompressing anything: its blocks and
 * their filters. */
struct logs_blocks {
	size_t n;
	struct logs_block {
		uint32_t n_lines; /* 0 when unknown (an old chunk) */
		uint32_t nblocks; /* of its filter; 0: no filter, may hold anything */
		size_t words;     /* its filter: logs_blocks.words + words */
		size_t off, len;  /* its data in the stored body */
		const void *data; /* with logs_blocks_open: borrowed from the body */
	} *b;
	size_t alloc;
	size_t words_off, n_words; /* where the filters are in the stored body */
	uint32_t *words; /* aligned copies of the filters */
	size_t alloc_words;
};
void logs_blocks_init(struct logs_blocks *bl);
void logs_blocks_release(struct logs_blocks *bl);
/* Reads the block table from the first head_len bytes of a stored body of
 * size bytes (for reading parts of it: see store_logs_data_read). 0, with
 * bl->b[k].off/len, words_off and n_words set and bl->words sized for
 * n_words (the caller fills it); -EAGAIN when the table goes beyond
 * head_len (*need: the bytes it needs); -EINVAL when it is damaged. */
#define LOGS_BLOCKS_HEAD 4096
int logs_blocks_head(struct logs_blocks *bl, const void *head, size_t head_len, size_t size,
		     size_t *need);
/* Opens a whole stored body (borrowed: it must outlive the use of bl's
 * blocks' data). 0, or -EINVAL when its block table is damaged. */
int logs_blocks_open(struct logs_blocks *bl, const void *data, size_t len);
void logs_view_get(const struct logs_view *v, size_t k, const char *app, struct logs_rec *out);

/* ------------------------------------------------------------------------ */
/* The filter and the query language (logs_query.c)                        */

enum logs_node_kind { LOGS_Q_TERM, LOGS_Q_FIELD, LOGS_Q_AND, LOGS_Q_OR, LOGS_Q_NOT };

/* A parsed q. TERM: a word or "phrase" (text, lowercased), matched as a
 * case-insensitive substring that begins and ends at word boundaries.
 * FIELD: key:value, value compared case-insensitively; the keys app,
 * process, instance, stream, level and release are the record's own. */
struct logs_node {
	enum logs_node_kind kind;
	char *text; /* TERM: lowercased needle; FIELD: value */
	size_t len;
	char *key;                     /* FIELD */
	uint64_t *hashes;              /* the words inside text, for the bloom */
	size_t n_hashes;
	bool needs_parse;              /* FIELD on a lifted field */
	int ival;                      /* FIELD stream, level, release: the value checked */
	struct logs_node *a, *b;       /* AND/OR: a, b; NOT: a */
};

/* Parses q. NULL with *err (caller frees) on a syntax error; an empty q
 * gives NULL with *err NULL. Caller frees with logs_node_free. */
struct logs_node *logs_q_parse(const char *q, char **err);
void logs_node_free(struct logs_node *n);
/* The canonical form, for tests and messages: (AND a b), "phrase", k:v. */
void logs_node_format(const struct logs_node *n, struct strbuf *out);

/* Whether a chunk may hold a match: false only when its bloom filter rules
 * every match out. */
bool logs_node_may_match(const struct logs_node *n, const uint32_t *bloom, uint32_t nblocks);
/* Whether any node needs the line's lifted fields. */
bool logs_node_needs_parse(const struct logs_node *n);

/* Per-line scratch of an evaluation. */
struct logs_match_ctx {
	struct strbuf lower; /* the lowercased line */
	struct logs_parsed parsed;
	bool lowered, parsed_done;
};
void logs_match_ctx_init(struct logs_match_ctx *m);
void logs_match_ctx_release(struct logs_match_ctx *m);
/* Whether r passes f (attributes, time, level, q). */
bool logs_filter_match(const struct logs_filter *f, const struct logs_rec *r,
		       struct logs_match_ctx *m);
/* Whether a chunk of app with these bounds could hold a match of f. */
bool logs_filter_chunk(const struct logs_filter *f, const char *app, uint64_t seq_min,
		       uint64_t seq_max, int64_t t_min, int64_t t_max, uint32_t levels,
		       uint32_t streams);
bool logs_filter_app(const struct logs_filter *f, const char *app);

/* Sets the record's JSON form: seq, time (RFC 3339 with ns), app, process,
 * instance, release, stream, level, message, line, fields. Text escaped
 * with logs_escape_utf8. p is scratch. */
struct json *logs_rec_json(const struct logs_rec *r, struct logs_parsed *p);
/* "2026-11-29T22:57:15.123456789Z" */
void logs_format_time_ns(int64_t t_ns, char *buf, size_t size);

/* ------------------------------------------------------------------------ */
/* Batches: lines from the loop to the writer and back                     */

/* Packed records: struct logs_bhdr then app, process, instance (each
 * NUL-terminated) and the text, padded to 8 bytes. */
struct logs_bhdr {
	uint64_t seq;
	int64_t t_ns;
	int32_t release;
	uint32_t len;
	uint8_t stream, level;
	uint8_t app_len, proc_len;
	uint16_t inst_len;
	uint16_t pad;
};

struct logs_batch {
	struct logs_batch *next;
	size_t n;
	struct strbuf data;
};

struct logs_batch *logs_batch_new(void);
void logs_batch_free(struct logs_batch *b);
void logs_batch_add(struct logs_batch *b, const struct logs_rec *r);
/* Iterates: pos starts at 0; false at the end. */
bool logs_batch_next(const struct logs_batch *b, size_t *pos, struct logs_rec *out,
		     struct logs_bhdr **hdr);

/* ------------------------------------------------------------------------ */
/* The writer thread (logs_writer.c)                                        */

struct logs_writer;

struct logs_writer_config {
	struct logs *logs;
	const char *path;
	int64_t flush_ms;
	int64_t retention_ms;
	int64_t max_bytes, app_max_bytes;
	int min_free_pct;
	int zlevel;
	uint64_t chunk_bytes; /* seal an open chunk at this many raw bytes */
	int64_t chunk_age_ms; /* or when its oldest line is this old */
};

struct logs_writer *logs_writer_start(const struct logs_writer_config *cfg, uint64_t *next_seq,
				      int64_t *last_t_ns, char **err);
/* Writes what is queued, seals every open chunk, joins the thread. */
void logs_writer_stop(struct logs_writer *w);
/* Queues a batch (taken over on success); false when the queue is full or
 * the writer stops (the caller keeps b). Any thread. */
bool logs_writer_push(struct logs_writer *w, struct logs_batch *b);
/* Runs retention now (tests); blocks until done. */
void logs_writer_sync(struct logs_writer *w, bool retention);
/* Bytes of batches waiting for the writer (any thread). */
uint64_t logs_writer_queue_bytes(struct logs_writer *w);
/* Milliseconds since the writer last took batches (any thread). */
int64_t logs_writer_idle_ms(struct logs_writer *w);
void logs_writer_stats(struct logs_writer *w, struct json *out);

/* ------------------------------------------------------------------------ */
/* Bloom cache (logs.c)                                                     */

/* Loads (or finds) the bloom of chunk id; calls test under the cache lock. */
struct logs_bloom_ref {
	const uint32_t *words;
	uint32_t nblocks;
};
void logs__bloom_put(struct logs *l, int64_t id, const uint32_t *words, uint32_t nblocks);
void logs__bloom_forget(struct logs *l, int64_t id);

/* ------------------------------------------------------------------------ */
/* Chunk directory (logs.c; made by the writer)                            */

/* The metadata of every chunk as of one commit, in memory, so that a query
 * lists chunks without stepping through SQLite's index. The writer
 * publishes a new one after each commit that adds or removes chunks, and
 * counts those commits in the meta key "commit_gen" in the same
 * transaction: a query uses a directory only when its gen is the one its
 * read snapshot sees (else it lists chunks from the database). Immutable
 * once published, reference-counted. */
struct logs_dent {
	int64_t id;
	uint64_t seq_min, seq_max;
	int64_t t_min, t_max;
	uint64_t raw_bytes, bytes;
	uint32_t n_lines, levels, streams;
	uint32_t app; /* index into names */
	bool sealed;
	bool dead;    /* the writer's own list only: removed, not yet compacted */
};

struct logs_dir {
	_Atomic int refs;
	uint64_t gen;
	size_t n;
	struct logs_dent *by_max; /* by seq_max, ascending */
	uint32_t *by_min;         /* indexes into by_max, by seq_min ascending */
	char **names;             /* app names */
	size_t n_names;
};

/* Directories larger than this are not kept: queries list from SQLite. */
#define LOGS_DIR_MAX 200000

/* Makes a directory of the n live entries of dents (names: n_names app
 * names, copied). Returns it with one reference, for logs__dir_publish. */
struct logs_dir *logs_dir_new(const struct logs_dent *dents, size_t n, char *const *names,
			      size_t n_names, uint64_t gen);
/* Drops a reference; the last one frees it. NULL does nothing. */
void logs_dir_put(struct logs_dir *d);
/* Replaces the published directory (takes d's reference; d may be NULL:
 * none). Any thread. */
void logs__dir_publish(struct logs *l, struct logs_dir *d);

/* Called by the writer (on its thread) once batches are committed; they
 * are handed to the loop for tails and drains, which free them. */
void logs__committed(struct logs *l, struct logs_batch *head, uint64_t high_seq);
/* Stats from the writer: bytes on disk per app. */

/* ------------------------------------------------------------------------ */
/* Drains (logs_drain.c)                                                    */

struct logs_drain;
/* url: syslog://HOST:PORT, syslog+tcp://, http://, https://. app NULL: all
 * apps. NULL + *err on a bad URL. */
struct logs_drain *logs_drain_new(uv_loop_t *loop, const char *url, const char *app, int64_t id,
				  char **err);
/* Closes it (asynchronously) and frees it. */
void logs_drain_free(struct logs_drain *d);
/* Queues a committed line (loop thread). */
void logs_drain_push(struct logs_drain *d, const struct logs_rec *r);
bool logs_drain_wants(const struct logs_drain *d, const char *app);
/* The drain as listings show it: its url with credentials masked. */
struct json *logs_drain_json(const struct logs_drain *d);
int64_t logs_drain_id(const struct logs_drain *d);
/* Borrowed, valid while d lives. app: NULL for a drain of every app. */
const char *logs_drain_url(const struct logs_drain *d);
const char *logs_drain_app(const struct logs_drain *d);
/* url as it may be shown to anyone allowed to list drains: a userinfo's
 * password (or a lone user, which may be a token) and the values of an
 * HTTP URL's query as "********". Caller frees. */
char *logs_drain_url_shown(const char *url);
/* RFC 5424 message for r (without framing), for tests. */
void logs_drain_syslog_format(struct strbuf *out, const struct logs_rec *r, const char *hostname);

#endif
