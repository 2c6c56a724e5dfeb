/* proc.c: facts about processes from /proc (see proc.h). */
#include "core/proc.h"
#include <dirent.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *proc_stat_fields(int pid, char *buf, size_t n)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return NULL;
	size_t len = fread(buf, 1, n - 1, f);
	fclose(f);
	buf[len] = '\0';
	char *p = strrchr(buf, ')'); /* the last one ends the command name */
	return p && p[1] == ' ' ? p + 2 : NULL;
}

uint64_t proc_start_ticks(int pid)
{
	char buf[1024];
	const char *p = proc_stat_fields(pid, buf, sizeof(buf));
	unsigned long long v = 0;
	if (!p || sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
			 &v) != 1)
		return 0;
	return v;
}

void proc_cloexec_from(int lowfd)
{
	if (close_range((unsigned)lowfd, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
		return;
	DIR *d = opendir("/proc/self/fd"); /* kernels before 5.11 */
	if (!d)
		return;
	int self = dirfd(d);
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		int fd = atoi(e->d_name);
		if (e->d_name[0] < '0' || e->d_name[0] > '9' || fd < lowfd || fd == self)
			continue;
		int fl = fcntl(fd, F_GETFD);
		if (fl >= 0 && !(fl & FD_CLOEXEC))
			fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
	}
	closedir(d);
}

int proc_kill_session(int sid, int sig)
{
	int n = 0;
	/* Twice: a process forked while the first pass read /proc is caught by
	 * the second. */
	for (int pass = 0; pass < 2; pass++) {
		DIR *d = opendir("/proc");
		if (!d)
			return n;
		for (struct dirent *e; (e = readdir(d)) != NULL;) {
			int pid = atoi(e->d_name);
			char buf[512];
			const char *p = pid > 0 ? proc_stat_fields(pid, buf, sizeof(buf)) : NULL;
			int session = 0;
			if (p && sscanf(p, "%*c %*d %*d %d", &session) == 1 && session == sid &&
			    kill(pid, sig) == 0)
				n++;
		}
		closedir(d);
	}
	return n;
}
