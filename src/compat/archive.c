/* archive.c: the libarchive adapter (see archive.h). Extraction checks every
 * entry itself before letting libarchive write it, and also asks libarchive
 * for its own secure-extraction checks, so a single oversight in either
 * does not open the file system. */
#include "compat/archive.h"
#include "core/strbuf.h"
#include "core/util.h"
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Whether a relative path stays inside its root: no absolute path, no ".."
 * component. */
static const char *path_problem(const char *p)
{
	if (!*p)
		return "an empty path";
	if (p[0] == '/')
		return "an absolute path";
	const char *s = p;
	while (*s) {
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (n == 2 && s[0] == '.' && s[1] == '.')
			return "a '..' component";
		s += n + (e ? 1 : 0);
	}
	return NULL;
}

/* Symlinks may only point down into their own directory: relative, with
 * no ".." at all. Chains of such links cannot leave the release, which a
 * lexical check of targets with ".." could not promise. */
static bool link_inside(const char *target)
{
	return target[0] != '/' && path_problem(target) == NULL;
}

int archive_extract_safe(const char *path, const char *dest, const struct archive_limits *lim,
			 char **err)
{
	struct archive *in = archive_read_new();
	struct archive *out = archive_write_disk_new();
	archive_read_support_filter_all(in);
	archive_read_support_format_tar(in);
	archive_read_support_format_gnutar(in);
	/* Entries are written at dest/NAME with NAME checked below; the
	 * process-wide working directory is never changed (threads). */
	archive_write_disk_set_options(out, ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_TIME |
						    ARCHIVE_EXTRACT_PERM);
	int rc = 0;
	int64_t files = 0, bytes = 0;
	if (archive_read_open_filename(in, path, 65536) != ARCHIVE_OK) {
		*err = xasprintf("cannot read the archive: %s", archive_error_string(in));
		rc = -EINVAL;
		goto out;
	}
	struct archive_entry *e;
	int r;
	while ((r = archive_read_next_header(in, &e)) == ARCHIVE_OK) {
		const char *name = archive_entry_pathname(e);
		while (name && name[0] == '.' && name[1] == '/')
			name += 2;
		if (!name || !*name || !strcmp(name, ".") || !strcmp(name, "./"))
			continue;
		const char *why = path_problem(name);
		if (why) {
			*err = xasprintf("refused entry '%.200s': %s", name, why);
			rc = -EPERM;
			goto out;
		}
		char *full = xasprintf("%s/%s", dest, name);
		archive_entry_set_pathname(e, full);
		free(full);
		name = archive_entry_pathname(e) + strlen(dest) + 1;
		mode_t type = archive_entry_filetype(e);
		if (archive_entry_hardlink(e)) {
			*err = xasprintf("refused entry '%.200s': hard links are not allowed", name);
			rc = -EPERM;
			goto out;
		}
		if (type == AE_IFLNK) {
			const char *t = archive_entry_symlink(e);
			if (!t || !link_inside(t)) {
				*err = xasprintf("refused entry '%.200s': a link pointing outside the release ('%.200s')",
						 name, t ? t : "");
				rc = -EPERM;
				goto out;
			}
		} else if (type != AE_IFREG && type != AE_IFDIR) {
			*err = xasprintf("refused entry '%.200s': device files, FIFOs and sockets are not allowed", name);
			rc = -EPERM;
			goto out;
		}
		if (++files > lim->max_files) {
			*err = xasprintf("the archive has more than %lld entries", (long long)lim->max_files);
			rc = -EFBIG;
			goto out;
		}
		/* Never trust the recorded size alone: count what is written. */
		archive_entry_set_perm(e, archive_entry_perm(e) & 0755);
		if (archive_write_header(out, e) != ARCHIVE_OK) {
			*err = xasprintf("cannot extract '%.200s': %s", name, archive_error_string(out));
			rc = -EIO;
			goto out;
		}
		if (type == AE_IFREG) {
			const void *buf;
			size_t len;
			la_int64_t off;
			int br;
			while ((br = archive_read_data_block(in, &buf, &len, &off)) == ARCHIVE_OK) {
				bytes += (int64_t)len;
				if (bytes > lim->max_bytes) {
					*err = xasprintf("the archive unpacks to more than %lld bytes",
							 (long long)lim->max_bytes);
					rc = -EFBIG;
					goto out;
				}
				if (archive_write_data_block(out, buf, len, off) != ARCHIVE_OK) {
					*err = xasprintf("cannot write '%.200s': %s", name, archive_error_string(out));
					rc = -EIO;
					goto out;
				}
			}
			if (br != ARCHIVE_EOF) {
				*err = xasprintf("corrupt archive at '%.200s': %s", name, archive_error_string(in));
				rc = -EINVAL;
				goto out;
			}
		}
		archive_write_finish_entry(out);
	}
	if (r != ARCHIVE_EOF) {
		*err = xasprintf("corrupt archive: %s", archive_error_string(in));
		rc = -EINVAL;
	}
out:
	archive_write_close(out);
	archive_write_free(out);
	archive_read_free(in);
	return rc;
}

/* ---- packing ---- */

struct pack {
	struct archive *a;
	const char *root;
	const char *prefix; /* names in the archive start with it ("" or "dir/") */
	const char *const *ignore;
	char **err;
};

static bool ignored(const struct pack *pk, const char *rel, const char *name)
{
	if (!strcmp(name, ".git"))
		return true;
	for (const char *const *p = pk->ignore; p && *p; p++) {
		const char *pat = *p;
		size_t n = strlen(pat);
		char *trim = n && pat[n - 1] == '/' ? xstrndup(pat, n - 1) : NULL;
		const char *use = trim ? trim : pat;
		bool hit = fnmatch(use, rel, FNM_PATHNAME) == 0 || fnmatch(use, name, 0) == 0;
		free(trim);
		if (hit)
			return true;
	}
	return false;
}

static int pack_dir(struct pack *pk, const char *rel)
{
	char *abs = *rel ? xasprintf("%s/%s", pk->root, rel) : xstrdup(pk->root);
	DIR *d = opendir(abs);
	if (!d) {
		*pk->err = xasprintf("cannot read '%s': %s", abs, strerror(errno));
		free(abs);
		return -errno;
	}
	struct dirent *de;
	int rc = 0;
	while (rc == 0 && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char *crel = *rel ? xasprintf("%s/%s", rel, de->d_name) : xstrdup(de->d_name);
		char *cabs = xasprintf("%s/%s", abs, de->d_name);
		struct stat st;
		if (ignored(pk, crel, de->d_name) || lstat(cabs, &st) < 0) {
			free(crel);
			free(cabs);
			continue;
		}
		struct archive_entry *e = archive_entry_new();
		char *name = xasprintf("%s%s", pk->prefix, crel);
		archive_entry_set_pathname(e, name);
		free(name);
		archive_entry_copy_stat(e, &st);
		if (S_ISLNK(st.st_mode)) {
			char target[4096];
			ssize_t n = readlink(cabs, target, sizeof(target) - 1);
			if (n >= 0) {
				target[n] = '\0';
				archive_entry_set_symlink(e, target);
			}
			archive_write_header(pk->a, e);
		} else if (S_ISDIR(st.st_mode)) {
			archive_write_header(pk->a, e);
			rc = pack_dir(pk, crel);
		} else if (S_ISREG(st.st_mode)) {
			archive_write_header(pk->a, e);
			int fd = open(cabs, O_RDONLY | O_CLOEXEC);
			if (fd < 0) {
				*pk->err = xasprintf("cannot read '%s': %s", cabs, strerror(errno));
				rc = -errno;
			} else {
				char buf[65536];
				ssize_t n;
				while ((n = read(fd, buf, sizeof(buf))) > 0)
					archive_write_data(pk->a, buf, (size_t)n);
				close(fd);
			}
		}
		archive_entry_free(e);
		free(crel);
		free(cabs);
	}
	closedir(d);
	free(abs);
	return rc;
}

int archive_pack_dir(const char *dir, const char *const *ignore, const char *out_path, char **err)
{
	struct archive_root root = {dir, NULL, ignore};
	return archive_pack_roots(&root, 1, out_path, err);
}

int archive_pack_roots(const struct archive_root *roots, size_t n, const char *out_path, char **err)
{
	struct archive *a = archive_write_new();
	archive_write_add_filter_gzip(a);
	archive_write_set_format_pax_restricted(a);
	if (archive_write_open_filename(a, out_path) != ARCHIVE_OK) {
		*err = xasprintf("cannot write '%s': %s", out_path, archive_error_string(a));
		archive_write_free(a);
		return -EIO;
	}
	int rc = 0;
	for (size_t k = 0; rc == 0 && k < n; k++) {
		const char *as = roots[k].as;
		char *prefix = as && *as ? xasprintf("%s/", as) : xstrdup("");
		struct stat st;
		if (*prefix && stat(roots[k].dir, &st) == 0) {
			/* The directory itself, so that it comes back with its mode. */
			struct archive_entry *e = archive_entry_new();
			archive_entry_set_pathname(e, as);
			archive_entry_copy_stat(e, &st);
			archive_write_header(a, e);
			archive_entry_free(e);
		}
		struct pack pk = {a, roots[k].dir, prefix, roots[k].ignore, err};
		rc = pack_dir(&pk, "");
		free(prefix);
	}
	if (archive_write_close(a) != ARCHIVE_OK && rc == 0) {
		*err = xasprintf("cannot finish '%s': %s", out_path, archive_error_string(a));
		rc = -EIO;
	}
	archive_write_free(a);
	return rc;
}
