/* paths.h: where paasops keeps its data by default, shared by the daemon and
 * the CLI so that both agree without configuration. */
#ifndef PAASOPS_PATHS_H
#define PAASOPS_PATHS_H

/* /var/lib/paasops for root; else $XDG_DATA_HOME/paasops or
 * ~/.local/share/paasops. Caller frees; NULL when the user has no home. */
char *paths_default_data_dir(void);
/* Creates dir and its parents (mode for the last one); 0 or -errno. */
int paths_mkdir_p(const char *dir, unsigned mode);

/* Removes a directory tree (never following symlinks); 0 or -errno. */
int paths_remove_tree(const char *dir);
/* Copies the regular file src to dst (created with mode, which must not
 * exist), fsync'd. 0 or -errno. */
int paths_copy_file(const char *src, const char *dst, unsigned mode);
/* Free bytes for an unprivileged user on the file system holding path, or -1. */
long long paths_free_bytes(const char *path);

#endif
