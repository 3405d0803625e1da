/*
 * pidns.c - jobs in a PID namespace of their own (see pidns.h).
 */
#include "pidns.h"

#include <errno.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

#define SCRATCH_PREFIX "/tmp/cr-tmpfs."

/*
 * clone3() without a stack of its own returns twice, as fork() does. Only
 * clone can put the daemon's own child into a new PID namespace (unshare()
 * would move its grandchildren only), and the job must be the daemon's child:
 * its watch waits for it by pidfd. The child only execs after this (spawn).
 */
pid_t pidns_fork(void)
{
	struct clone_args ca;
	long r;

	memset(&ca, 0, sizeof(ca));
	ca.flags = CLONE_NEWPID | CLONE_NEWNS;
	ca.exit_signal = SIGCHLD;
	r = syscall(SYS_clone3, &ca, sizeof(ca));
	return r < 0 ? -errno : (pid_t)r;
}

int pidns_child_setup(void)
{
	/* A copy of the host's mounts, but nothing of ours may reach the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return -errno;
	/* The host's /proc (and what is mounted under it) goes; ours replaces it. */
	if (umount2("/proc", MNT_DETACH) && errno != EINVAL)
		return -errno;
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
		return -errno;
	return 0;
}

pid_t pidns_inner_pid(pid_t pid)
{
	char path[64], *text = NULL, *line, *end;
	long last = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (read_file(path, &text, NULL))
		return -1;
	line = strstr(text, "\nNSpid:");
	if (line) {
		/* One PID per namespace level, outermost first: the last is its own. */
		for (char *p = line + 7; *p && *p != '\n'; p = end) {
			long v = strtol(p, &end, 10);

			if (end == p)
				break;
			last = v;
		}
	}
	free(text);
	return (pid_t)last;
}

/* Bytes a key may hold as they are: CRIU's "mnt[KEY]:VAL" syntax needs no ']' in it. */
static bool pidns_key_plain(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       strchr("/._-+,=@", c);
}

char *pidns_mount_key(const char *mp)
{
	char *key = malloc(strlen(mp) * 3 + 1), *q = key;

	if (!key)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)mp; *p; p++)
		if (pidns_key_plain(*p))
			*q++ = (char)*p;
		else
			q += sprintf(q, "%%%02X", *p);
	*q = '\0';
	return key;
}

/* The value of hex digit C, or -1. */
static int pidns_hex(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

char *pidns_key_mount(const char *key)
{
	char *mp = malloc(strlen(key) + 1), *q = mp;

	if (!mp)
		return NULL;
	/* Only what pidns_mount_key() makes: a key from a record is checked. */
	for (const char *p = key; *p; p++) {
		int hi = *p == '%' ? pidns_hex(p[1]) : -1, lo = hi < 0 ? -1 : pidns_hex(p[2]);

		if (pidns_key_plain((unsigned char)*p) && *p != '%')
			*q++ = *p;
		else if (hi >= 0 && lo >= 0 && (hi || lo)) {
			*q++ = (char)(hi * 16 + lo);
			p += 2;
		} else
			goto bad;
	}
	*q = '\0';
	if (mp[0] == '/')
		return mp;
bad:
	free(mp);
	return NULL;
}

/* Undo mountinfo's octal escapes (\040 for a space, ...) in place. */
static void pidns_unescape(char *s)
{
	char *q = s;

	for (char *p = s; *p; p++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
		    p[3] >= '0' && p[3] <= '7') {
			*q++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
			p += 3;
		} else
			*q++ = *p;
	}
	*q = '\0';
}

static void pidns_list_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

/* The line after LINE in a text, or its end. */
static const char *pidns_next_line(const char *line)
{
	const char *eol = strchrnul(line, '\n');

	return *eol ? eol + 1 : eol;
}

/* The mount point of mountinfo's line LINE (its 5th field), unescaped, or NULL. */
static char *pidns_line_mount(const char *line, size_t len)
{
	char *copy = strndup(line, len), *f, *save = NULL, *mp = NULL;

	if (!copy)
		return NULL;
	f = strtok_r(copy, " ", &save);
	for (int i = 1; f && i < 5; i++)
		f = strtok_r(NULL, " ", &save);
	if (f) {
		pidns_unescape(f);
		mp = strdup(f);
	}
	free(copy);
	return mp;
}

static int pidns_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The mount points of the mountinfo text INFO, sorted (a host may have thousands). */
static char **pidns_mount_points(const char *info, size_t *n)
{
	char **v = NULL, **nv;
	size_t cap = 0;

	*n = 0;
	for (const char *l = info; *l; l = pidns_next_line(l)) {
		char *mp = pidns_line_mount(l, strchrnul(l, '\n') - l);

		if (!mp)
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 64;
			nv = realloc(v, cap * sizeof(char *));
			if (!nv) {
				free(mp);
				pidns_list_free(v, *n);
				return NULL;
			}
			v = nv;
		}
		v[(*n)++] = mp;
	}
	if (!v)
		v = calloc(1, sizeof(char *));
	else
		qsort(v, *n, sizeof(char *), pidns_cmp);
	return v;
}

/*
 * Which of the job's mounts are the host's: those at mount points that the
 * host (the daemon's mount namespace, where CRIU runs) has too, but the root
 * (--root /) and the job's own /proc and what is under it. A mount the job
 * made at a place of its own is left to CRIU, which dumps it as the job's.
 * A mount point with a ']' cannot be named in CRIU's syntax: left to CRIU too.
 */
static bool pidns_external(const char *mp, char **host, size_t nhost)
{
	if (!strcmp(mp, "/") || !strcmp(mp, "/proc") || !strncmp(mp, "/proc/", 6) ||
	    strchr(mp, ']'))
		return false;
	return bsearch(&mp, host, nhost, sizeof(char *), pidns_cmp) != NULL;
}

/* Append A and B (both taken, NULL: out of memory) to the vector *ARGS of *N. */
static int pidns_push_pair(char ***args, size_t *n, char *a, char *b)
{
	char **v = NULL;

	if (a && b)
		v = realloc(*args, (*n + 3) * sizeof(char *));
	if (!v) {
		free(a);
		free(b);
		return -ENOMEM;
	}
	*args = v;
	v[(*n)++] = a;
	v[(*n)++] = b;
	v[*n] = NULL;
	return 0;
}

static int pidns_push(char ***args, size_t *n, char *value)
{
	return pidns_push_pair(args, n, strdup("--external"), value);
}

/* One mount of the job: named external (dump option, recorded key) if it is the host's. */
static int pidns_name_mount(const char *mp, char **host, size_t nhost, json_t *opts,
                            char ***args, size_t *n)
{
	char *key, *val = NULL, *rec = NULL;
	int ret = -ENOMEM;

	if (!pidns_external(mp, host, nhost))
		return 0;
	key = pidns_mount_key(mp);
	if (key && asprintf(&rec, "mnt:%s", key) >= 0) {
		/* A mount point stacked on another is named once: CRIU keys by path. */
		for (size_t i = 0; i < json_array_size(opts); i++)
			if (!strcmp(json_string_value(json_array_get(opts, i)) ?: "", rec))
				ret = 0;
		if (ret && asprintf(&val, "mnt[%s]:%s", mp, key) >= 0) {
			ret = pidns_push(args, n, val);
			if (!ret)
				ret = json_array_append_new(opts, json_string(rec)) ? -ENOMEM : 0;
		}
	}
	free(rec);
	free(key);
	return ret;
}

int pidns_dump_mounts(const char *job_info, const char *host_info, json_t *opts, char ***args)
{
	size_t n = 0, nhost;
	char **host = pidns_mount_points(host_info, &nhost);
	int ret = 0;

	*args = host ? calloc(1, sizeof(char *)) : NULL;
	if (!*args) {
		pidns_list_free(host, nhost);
		return -ENOMEM;
	}
	for (const char *l = job_info; *l && !ret; l = pidns_next_line(l)) {
		char *mp = pidns_line_mount(l, strchrnul(l, '\n') - l);

		if (mp)
			ret = pidns_name_mount(mp, host, nhost, opts, args, &n);
		free(mp);
	}
	pidns_list_free(host, nhost);
	if (ret) {
		pidns_args_free(*args);
		*args = NULL;
	}
	return ret;
}

int pidns_dump_args(pid_t pid, json_t *opts, char ***args)
{
	char path[64], *job_info = NULL, *host_info = NULL;
	int ret;

	snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)pid);
	ret = read_file(path, &job_info, NULL);
	if (!ret)
		ret = read_file("/proc/self/mountinfo", &host_info, NULL);
	if (!ret)
		ret = pidns_dump_mounts(job_info, host_info, opts, args);
	free(job_info);
	free(host_info);
	return ret;
}

/* `--external mnt[KEY]:MP` for mount point MP (KEY: its pidns_mount_key()). */
static int pidns_push_key(char ***args, size_t *n, const char *key, const char *mp)
{
	char *val = NULL;

	if (asprintf(&val, "mnt[%s]:%s", key, mp) < 0)
		return -ENOMEM;
	return pidns_push(args, n, val);
}

/*
 * A checkpoint without a record of its mounts (restored from a directory the
 * daemon did not record): every mount point of this host, as its dump would
 * have named it. Keys the images do not hold are not looked at.
 */
static int pidns_push_host_keys(char ***args, size_t *n)
{
	char *info = NULL, **host = NULL, *key;
	size_t nhost = 0;
	int ret = read_file("/proc/self/mountinfo", &info, NULL);

	if (!ret && !(host = pidns_mount_points(info, &nhost)))
		ret = -ENOMEM;
	for (size_t i = 0; !ret && i < nhost; i++) {
		if (!pidns_external(host[i], host, nhost))
			continue;
		key = pidns_mount_key(host[i]);
		ret = key ? pidns_push_key(args, n, key, host[i]) : -ENOMEM;
		free(key);
	}
	pidns_list_free(host, nhost);
	free(info);
	return ret;
}

int pidns_restore_args(json_t *opts, char ***args)
{
	bool recorded = false;
	size_t n = 0, i;
	json_t *v;
	int ret;

	*args = calloc(1, sizeof(char *));
	if (!*args)
		return -ENOMEM;
	ret = pidns_push_pair(args, &n, strdup("--root"), strdup("/"));
	/* Checkpoints dumped before mounts were named carry CRIU's own guesses. */
	if (!ret)
		ret = pidns_push(args, &n, strdup("mnt[]"));
	json_array_foreach(opts, i, v)
	{
		const char *rec = json_string_value(v);
		char *mp;

		if (ret || !rec || strncmp(rec, "mnt:", 4))
			continue;
		recorded = true;
		/* The same mount point here: this host's file system at that path. */
		mp = pidns_key_mount(rec + 4);
		ret = mp ? pidns_push_key(args, &n, rec + 4, mp) : -EINVAL;
		free(mp);
	}
	if (!ret && !recorded)
		ret = pidns_push_host_keys(args, &n);
	if (ret) {
		pidns_args_free(*args);
		*args = NULL;
	}
	return ret;
}

size_t pidns_args_count(char *const *args)
{
	size_t n = 0;

	while (args && args[n])
		n++;
	return n;
}

void pidns_args_free(char **args)
{
	for (size_t i = 0; args && args[i]; i++)
		free(args[i]);
	free(args);
}

/* Is NAME exactly SCRATCH_PREFIX and six characters of mkdtemp()'s alphabet? */
static bool scratch_name(const char *name)
{
	size_t n = strlen(SCRATCH_PREFIX);

	if (strncmp(name, SCRATCH_PREFIX, n) || strlen(name + n) != 6)
		return false;
	for (const char *p = name + n; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9')))
			return false;
	return true;
}

void pidns_restore_cleanup(const char *restore_log, uid_t uid)
{
	char *text = NULL, *p, name[64];
	struct stat st;

	if (read_file(restore_log, &text, NULL))
		return;
	p = strstr(text, "Unable to remove " SCRATCH_PREFIX);
	if (p && sscanf(p + strlen("Unable to remove "), "%63[^: \n]", name) == 1 &&
	    scratch_name(name) && !lstat(name, &st) && S_ISDIR(st.st_mode) && st.st_uid == uid)
		rmdir(name); /* only ever an empty directory */
	free(text);
}
