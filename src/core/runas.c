/* runas.c: the user that app code runs as (see runas.h). */
#include "core/runas.h"
#include "core/util.h"
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A number made of digits only, below the id that means "none". */
static bool parse_id(const char *s, unsigned long *out)
{
	if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 10)
		return false;
	*out = strtoul(s, NULL, 10);
	return *out < 4294967295UL;
}

int runas_parse(const char *spec, struct runas *out, char **err)
{
	memset(out, 0, sizeof(*out));
	char *user = xstrdup(spec);
	char *group = strchr(user, ':');
	if (group)
		*group++ = '\0';
	if (!*user || (group && !*group)) {
		*err = xasprintf("invalid --run-as '%s' (want USER or USER:GROUP)", spec);
		free(user);
		return -EINVAL;
	}
	char buf[16384];
	struct passwd pw, *pwr = NULL;
	unsigned long id;
	bool numeric = parse_id(user, &id);
	if (numeric)
		getpwuid_r((uid_t)id, &pw, buf, sizeof(buf), &pwr);
	else
		getpwnam_r(user, &pw, buf, sizeof(buf), &pwr);
	if (!pwr && (!numeric || !group)) {
		*err = numeric ? xasprintf("--run-as: uid %s has no passwd entry; give its group too "
					   "(--run-as %s:GROUP)", user, user)
			       : xasprintf("--run-as: no such user '%s'", user);
		free(user);
		return -EINVAL;
	}
	out->uid = pwr ? pwr->pw_uid : (uid_t)id;
	out->gid = pwr ? pwr->pw_gid : 0;
	out->user = pwr ? xstrdup(pwr->pw_name) : xstrdup(user);
	out->home = xstrdup(pwr && pwr->pw_dir && pwr->pw_dir[0] == '/' ? pwr->pw_dir : "/");
	if (group) {
		struct group gr, *grr = NULL;
		if (parse_id(group, &id)) {
			out->gid = (gid_t)id;
		} else if (getgrnam_r(group, &gr, buf, sizeof(buf), &grr) == 0 && grr) {
			out->gid = grr->gr_gid;
		} else {
			*err = xasprintf("--run-as: no such group '%s'", group);
			free(user);
			runas_release(out);
			return -EINVAL;
		}
	}
	free(user);
	if (out->uid == 0 || out->gid == 0) {
		*err = xasprintf("--run-as '%s' is root's %s: app code would have the daemon's authority; "
				 "name an unprivileged user", spec, out->uid == 0 ? "user" : "group");
		runas_release(out);
		return -EINVAL;
	}
	return 0;
}

void runas_release(struct runas *r)
{
	free(r->user);
	free(r->home);
	r->user = r->home = NULL;
}

bool runas_may(const struct runas *r, const struct stat *st, int mode)
{
	unsigned bits = st->st_uid == r->uid ? (st->st_mode >> 6) & 7
			: st->st_gid == r->gid ? (st->st_mode >> 3) & 7
					       : st->st_mode & 7;
	unsigned want = ((mode & R_OK) ? 4u : 0u) | ((mode & W_OK) ? 2u : 0u) | ((mode & X_OK) ? 1u : 0u);
	return (bits & want) == want;
}

int runas_reach(const struct runas *r, const char *path, int mode, char **bad)
{
	char *p = xstrdup(path);
	struct stat st;
	/* Each directory above path, from the root down. */
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		const char *dir = p[0] ? p : "/";
		int e = stat(dir, &st) < 0 ? -errno : 0;
		if (e == 0 && !runas_may(r, &st, X_OK))
			e = -EACCES;
		if (e < 0) {
			*bad = xstrdup(dir);
			free(p);
			return e;
		}
		*s = '/';
	}
	int e = stat(p, &st) < 0 ? -errno : 0;
	if (e == 0 && mode && !runas_may(r, &st, mode))
		e = -EACCES;
	if (e < 0) {
		*bad = p;
		return e;
	}
	free(p);
	return 0;
}

/* Gives what dirfd's directory holds to r, depth first. */
static int chown_below(const struct runas *r, int dirfd)
{
	DIR *d = fdopendir(dirfd);
	if (!d) {
		int e = -errno;
		close(dirfd);
		return e;
	}
	int rc = 0;
	struct dirent *e;
	while (rc == 0 && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		struct stat st;
		if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = -errno;
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			rc = sub < 0 ? -errno : chown_below(r, sub);
		}
		if (rc == 0 && fchownat(dirfd, e->d_name, r->uid, r->gid, AT_SYMLINK_NOFOLLOW) < 0)
			rc = -errno;
	}
	closedir(d);
	return rc;
}

int runas_chown_tree(const struct runas *r, const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fchown(fd, r->uid, r->gid) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return chown_below(r, fd);
}
