/* archive.h: the one adapter to libarchive: safe extraction of release
 * archives and packing a directory for upload. */
#ifndef PAASOPS_ARCHIVE_H
#define PAASOPS_ARCHIVE_H
#include <stddef.h>
#include <stdint.h>

struct archive_limits {
	int64_t max_bytes; /* total size of extracted files */
	int64_t max_files; /* entries */
};

/* Extracts a tar (optionally gzip/xz/bzip2 compressed) into dest, which
 * must exist and be empty. Refused, with a message in *err: absolute paths,
 * `..` components, links pointing outside dest (or hard links at all),
 * device files, FIFOs and sockets, more than the limits. Regular files and
 * directories only, plus symlinks that stay inside. 0 or a negative errno. */
int archive_extract_safe(const char *path, const char *dest, const struct archive_limits *lim,
			 char **err);

/* Packs dir into a gzipped tar at out_path. ignore: NULL-terminated list of
 * patterns (fnmatch on the path relative to dir, and on each name); ".git"
 * is always ignored. 0 or a negative errno with *err. */
int archive_pack_dir(const char *dir, const char *const *ignore, const char *out_path, char **err);

/* One directory to pack: its contents go under `as` in the archive
 * (NULL or "": at the top), skipping ignore (as for archive_pack_dir). */
struct archive_root {
	const char *dir;
	const char *as;
	const char *const *ignore;
};
/* Packs several directories into one gzipped tar at out_path. */
int archive_pack_roots(const struct archive_root *roots, size_t n, const char *out_path, char **err);

#endif
