/* paths.c: default data directory (see paths.h). */
#include "core/paths.h"
#include "core/util.h"
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/statvfs.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Root gets the FHS location; any other user a per-user directory
 * following the XDG base directory spec, which says relative values of
 * XDG_DATA_HOME are to be ignored. */
char *paths_default_data_dir(void)
{
	if (geteuid() == 0)
		return xstrdup("/var/lib/paasops");
	const char *xdg = getenv("XDG_DATA_HOME");
	if (xdg && xdg[0] == '/')
		return xasprintf("%s/paasops", xdg);
	const char *home = getenv("HOME");
	if (!home || home[0] != '/') {
		struct passwd *pw = getpwuid(geteuid());
		home = pw && pw->pw_dir && pw->pw_dir[0] == '/' ? pw->pw_dir : NULL;
	}
	if (!home)
		return NULL;
	/* "/" as a home directory must not give "//.local". */
	return xasprintf("%s/.local/share/paasops", home[1] ? home : "");
}

int paths_mkdir_p(const char *dir, unsigned mode)
{
	char *p = xstrdup(dir);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST) {
			int e = -errno;
			free(p);
			return e;
		}
		*s = '/';
	}
	int r = mkdir(p, mode) < 0 && errno != EEXIST ? -errno : 0;
	free(p);
	return r;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

int paths_remove_tree(const char *dir)
{
	return nftw(dir, remove_entry, 32, FTW_DEPTH | FTW_PHYS) < 0 ? -errno : 0;
}

long long paths_free_bytes(const char *path)
{
	struct statvfs v;
	if (statvfs(path, &v) < 0)
		return -1;
	return (long long)v.f_bavail * (long long)v.f_frsize;
}

int paths_copy_file(const char *src, const char *dst, unsigned mode)
{
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -errno;
	int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (out < 0) {
		int e = errno;
		close(in);
		return -e;
	}
	char buf[65536];
	ssize_t n;
	int rc = 0;
	while ((n = read(in, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				rc = -errno;
				break;
			}
			off += w;
		}
		if (rc < 0)
			break;
	}
	if (rc == 0 && fsync(out) < 0)
		rc = -errno;
	close(in);
	if (close(out) < 0 && rc == 0)
		rc = -errno;
	if (rc < 0)
		unlink(dst);
	return rc;
}
