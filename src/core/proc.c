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

uint64_t proc_start_ticks(int pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: skip past the last ')'. */
	char *p = strrchr(buf, ')');
	unsigned long long v = 0;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
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
			if (pid <= 0)
				continue;
			char path[64], buf[512];
			snprintf(path, sizeof(path), "/proc/%d/stat", pid);
			FILE *f = fopen(path, "re");
			if (!f)
				continue;
			size_t len = fread(buf, 1, sizeof(buf) - 1, f);
			fclose(f);
			buf[len] = '\0';
			char *p = strrchr(buf, ')');
			int session = 0;
			if (p && sscanf(p + 2, "%*c %*d %*d %d", &session) == 1 && session == sid &&
			    kill(pid, sig) == 0)
				n++;
		}
		closedir(d);
	}
	return n;
}
