/*
 * migrate_files.c - list, on the source, the files a job's processes use, and
 * check, on the target, that they are there (see migrate_files.h).
 *
 * Everything comes from /proc: PID/task/T/children for the tree, exe, cwd,
 * root, fd/ + fdinfo/ (flags tell O_APPEND and the access mode), and maps.
 */
#include "migrate_files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILES 4096
#define MAX_TREE  4096

int mfiles_tree(pid_t pid, pid_t **out, size_t *n)
{
	pid_t *v = malloc(MAX_TREE * sizeof(*v));
	size_t have = 0, next = 0;

	if (!v)
		return -ENOMEM;
	v[have++] = pid;
	/* Breadth first: each process's threads list their own children. */
	while (next < have) {
		char path[64];
		DIR *d;
		struct dirent *e;

		snprintf(path, sizeof(path), "/proc/%d/task", v[next]);
		d = opendir(path);
		while (d && (e = readdir(d))) {
			char cpath[320], *text = NULL, *p, *end;
			FILE *f;
			size_t cap = 0;

			if (e->d_name[0] == '.')
				continue;
			snprintf(cpath, sizeof(cpath), "/proc/%d/task/%s/children", v[next],
			         e->d_name);
			f = fopen(cpath, "re");
			if (!f)
				continue;
			if (getline(&text, &cap, f) > 0) {
				for (p = text;; p = end) {
					long c = strtol(p, &end, 10);

					if (end == p)
						break;
					if (have < MAX_TREE)
						v[have++] = (pid_t)c;
				}
			}
			free(text);
			fclose(f);
		}
		if (d)
			closedir(d);
		next++;
	}
	*out = v;
	*n = have;
	return 0;
}

static bool skip_path(const char *p, const char *skip)
{
	size_t n = strlen(p);

	if (p[0] != '/' || (skip && !strcmp(p, skip)))
		return true;
	if (n > 10 && !strcmp(p + n - 10, " (deleted)"))
		return true;
	return !strncmp(p, "/proc/", 6) || !strncmp(p, "/sys/", 5) || !strncmp(p, "/dev/", 5) ||
	       !strcmp(p, "/dev") || !strncmp(p, "/memfd:", 7);
}

/* Add PATH unless listed already; a later sighting may only relax check_size. */
static void add(json_t *list, const char *path, const struct stat *st, bool check_size)
{
	size_t i;
	json_t *v;

	json_array_foreach(list, i, v)
	{
		if (!strcmp(json_string_value(json_object_get(v, "path")), path)) {
			if (!check_size)
				json_object_set_new(v, "check_size", json_false());
			return;
		}
	}
	if (json_array_size(list) >= MAX_FILES)
		return;
	json_array_append_new(list, json_pack("{s:s, s:I, s:b, s:b}", "path", path, "size",
	                                      (json_int_t)st->st_size, "dir", S_ISDIR(st->st_mode),
	                                      "check_size", check_size && S_ISREG(st->st_mode)));
}

static void add_link(json_t *list, pid_t pid, const char *what, const char *skip)
{
	char link[64], path[PATH_MAX];
	struct stat st;
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/%d/%s", pid, what);
	n = readlink(link, path, sizeof(path) - 1);
	if (n <= 0)
		return;
	path[n] = '\0';
	if (skip_path(path, skip) || stat(link, &st))
		return;
	add(list, path, &st, true);
}

/* Open flags of PID's fd FD, from fdinfo. */
static long fd_flags(pid_t pid, const char *fd)
{
	char path[320], line[256];
	long flags = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%s", pid, fd);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "flags:", 6))
			flags = strtol(line + 6, NULL, 8);
	fclose(f);
	return flags;
}

static void add_fds(json_t *list, pid_t pid, const char *skip)
{
	char dpath[64];
	DIR *d;
	struct dirent *e;

	snprintf(dpath, sizeof(dpath), "/proc/%d/fd", pid);
	d = opendir(dpath);
	while (d && (e = readdir(d))) {
		char link[320], path[PATH_MAX];
		struct stat st;
		ssize_t n;
		long flags;

		if (e->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "%s/%s", dpath, e->d_name);
		n = readlink(link, path, sizeof(path) - 1);
		if (n <= 0)
			continue;
		path[n] = '\0';
		if (skip_path(path, skip) || stat(link, &st) || !S_ISREG(st.st_mode))
			continue;
		flags = fd_flags(pid, e->d_name);
		add(list, path, &st,
		    flags >= 0 && !(flags & O_APPEND) && (flags & O_ACCMODE) == O_RDONLY);
	}
	if (d)
		closedir(d);
}

static void add_maps(json_t *list, pid_t pid, const char *skip)
{
	char path[64], *line = NULL;
	size_t cap = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	f = fopen(path, "re");
	while (f && getline(&line, &cap, f) > 0) {
		char *p = strchr(line, '/');
		struct stat st;

		if (!p)
			continue;
		p[strcspn(p, "\n")] = '\0';
		if (skip_path(p, skip) || stat(p, &st))
			continue;
		add(list, p, &st, true);
	}
	free(line);
	if (f)
		fclose(f);
}

json_t *mfiles_collect(pid_t pid, const char *skip)
{
	json_t *list;
	pid_t *tree;
	size_t n;

	if (kill(pid, 0) && errno == ESRCH)
		return NULL;
	if (mfiles_tree(pid, &tree, &n))
		return NULL;
	list = json_array();
	for (size_t i = 0; i < n; i++) {
		add_link(list, tree[i], "exe", skip);
		add_link(list, tree[i], "cwd", skip);
		add_link(list, tree[i], "root", skip);
		add_fds(list, tree[i], skip);
		add_maps(list, tree[i], skip);
	}
	free(tree);
	return list;
}

/* Append "SEP TEXT" to BUF while it fits; note that some were left out. */
static void append(char *buf, size_t len, bool *first, const char *text)
{
	size_t used = strlen(buf);

	if (used + strlen(text) + 8 >= len) {
		if (!strstr(buf, ", ..."))
			snprintf(buf + used, len - used, ", ...");
		return;
	}
	snprintf(buf + used, len - used, "%s%s", *first ? "" : ", ", text);
	*first = false;
}

int mfiles_check(json_t *list, char *err, size_t errlen)
{
	char missing[2048] = "", differ[2048] = "", item[PATH_MAX + 96];
	bool first_m = true, first_d = true;
	size_t i;
	json_t *v;

	json_array_foreach(list, i, v)
	{
		const char *path = json_string_value(json_object_get(v, "path"));
		json_int_t size = json_integer_value(json_object_get(v, "size"));
		bool dir = json_is_true(json_object_get(v, "dir"));
		bool check = json_is_true(json_object_get(v, "check_size"));
		struct stat st;

		if (!path || path[0] != '/')
			continue;
		if (stat(path, &st)) {
			append(missing, sizeof(missing), &first_m, path);
		} else if (dir != !!S_ISDIR(st.st_mode)) {
			snprintf(item, sizeof(item), "%s (a %s here)", path,
			         S_ISDIR(st.st_mode) ? "directory" : "file");
			append(differ, sizeof(differ), &first_d, item);
		} else if (check && st.st_size != size) {
			snprintf(item, sizeof(item), "%s (%lld bytes here, %lld on the source)",
			         path, (long long)st.st_size, (long long)size);
			append(differ, sizeof(differ), &first_d, item);
		}
	}
	if (!*missing && !*differ)
		return 0;
	snprintf(err, errlen, "the job's files must be at the same paths on both hosts:%s%s%s%s",
	         *missing ? " missing here: " : "", missing, *differ ? "; different here: " : "",
	         differ);
	return -1;
}
