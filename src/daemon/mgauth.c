/*
 * mgauth.c - the migration policy: parsing /etc/stasis/migrate.conf and the
 * two decisions, may this user send there, and whom does an incoming job run
 * as here (contract in mgauth.h).
 */
#include "mgauth.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "transport.h"

#define MAX_RULES  512
#define MAX_POLICY (256 << 10)
#define TOK        256

enum kind { R_SEND, R_RECEIVE };

struct rule {
	enum kind kind;
	int line;
	char who[TOK]; /* send: WHO; receive: SRC */
	char to[TOK];  /* send: TARGET; receive: LOCAL */
	char from[TOK];
};

struct policy {
	bool present;
	int n;
	struct rule r[MAX_RULES];
};

/* Set once by mgauth_init(), before any thread runs. */
static char policy_file[4096] = MGAUTH_DEFAULT_FILE;

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

/* SRC: *, N or N-M. */
static bool src_valid(const char *s)
{
	char a[TOK], *dash;

	if (!strcmp(s, "*") || all_digits(s))
		return true;
	snprintf(a, sizeof(a), "%s", s);
	dash = strchr(a, '-');
	if (!dash)
		return false;
	*dash = '\0';
	return all_digits(a) && all_digits(dash + 1) &&
	       strtoul(a, NULL, 10) <= strtoul(dash + 1, NULL, 10);
}

static int parse_line(char *line, int lineno, struct rule *r, char *err, size_t errlen)
{
	char *tok[8], *save = NULL, *t;
	int n = 0;

	for (t = strtok_r(line, " \t\r", &save); t && n < 8; t = strtok_r(NULL, " \t\r", &save))
		tok[n++] = t;
	if (t || n == 0)
		goto bad;
	memset(r, 0, sizeof(*r));
	r->line = lineno;
	if (!strcmp(tok[0], "send") && n == 4 && !strcmp(tok[2], "to")) {
		r->kind = R_SEND;
	} else if (!strcmp(tok[0], "receive") && (n == 4 || n == 6) && !strcmp(tok[2], "as") &&
	           (n == 4 || !strcmp(tok[4], "from")) && src_valid(tok[1])) {
		r->kind = R_RECEIVE;
		snprintf(r->from, sizeof(r->from), "%s", n == 6 ? tok[5] : "*");
	} else {
		goto bad;
	}
	if (strlen(tok[1]) >= TOK || strlen(tok[3]) >= TOK || (n == 6 && strlen(tok[5]) >= TOK))
		goto bad;
	snprintf(r->who, sizeof(r->who), "%s", tok[1]);
	snprintf(r->to, sizeof(r->to), "%s", tok[3]);
	return 0;
bad:
	snprintf(err, errlen,
	         "line %d: expected `send WHO to TARGET` or `receive SRC as LOCAL [from ADDR]`",
	         lineno);
	return -1;
}

static int parse(char *text, struct policy *p, char *err, size_t errlen)
{
	char *save = NULL, *line;
	int lineno = 0;

	/* strtok_r would skip empty lines and miscount: split by hand. */
	for (line = text; line; line = save) {
		char *hash;

		save = strchr(line, '\n');
		if (save)
			*save++ = '\0';
		lineno++;
		hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		if (!line[strspn(line, " \t\r")])
			continue;
		if (p->n == MAX_RULES) {
			snprintf(err, errlen, "more than %d rules", MAX_RULES);
			return -1;
		}
		if (parse_line(line, lineno, &p->r[p->n], err, errlen))
			return -1;
		p->n++;
	}
	return 0;
}

/* Read the policy; a missing file is the default policy (P->present false). */
static int load(struct policy *p, char *err, size_t errlen)
{
	char path[sizeof(policy_file)], *text;
	struct stat st;
	ssize_t got;
	int fd, ret;

	memset(p, 0, sizeof(*p));
	snprintf(path, sizeof(path), "%s", policy_file);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0) {
		snprintf(err, errlen, "migration policy %s: %s", path, strerror(errno));
		return -1;
	}
	/* Whoever can write the policy decides who lands as whom: root only. */
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022) ||
	    st.st_size > MAX_POLICY) {
		snprintf(err, errlen,
		         "migration policy %s: must be a regular file of root's, at most %d "
		         "bytes, not writable by group or others",
		         path, MAX_POLICY);
		close(fd);
		return -1;
	}
	text = calloc(1, (size_t)st.st_size + 1);
	got = text ? read(fd, text, (size_t)st.st_size) : -1;
	close(fd);
	if (got != st.st_size) {
		snprintf(err, errlen, "migration policy %s: cannot read it", path);
		free(text);
		return -1;
	}
	p->present = true;
	ret = parse(text, p, err, errlen);
	free(text);
	if (ret) {
		char why[512];

		snprintf(why, sizeof(why), "%s", err);
		snprintf(err, errlen, "migration policy %s: %s", path, why);
	}
	return ret;
}

int mgauth_init(const char *path, char *err, size_t errlen)
{
	struct policy *p = malloc(sizeof(*p));
	int ret;

	if (!p) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(policy_file, sizeof(policy_file), "%s", path ? path : MGAUTH_DEFAULT_FILE);
	ret = load(p, err, errlen);
	free(p);
	return ret;
}

/* ---- send ---- */

static bool in_groups(const struct creds *c, gid_t g)
{
	if (c->gid == g)
		return true;
	for (int i = 0; i < c->ngroups; i++)
		if (c->groups[i] == g)
			return true;
	return false;
}

static bool who_matches(const char *who, const struct creds *c)
{
	char buf[4096];

	if (!strcmp(who, "*"))
		return true;
	if (who[0] == '@') {
		struct group gr, *res = NULL;

		if (all_digits(who + 1))
			return in_groups(c, (gid_t)strtoul(who + 1, NULL, 10));
		return !getgrnam_r(who + 1, &gr, buf, sizeof(buf), &res) && res &&
		       in_groups(c, gr.gr_gid);
	}
	if (all_digits(who))
		return c->uid == (uid_t)strtoul(who, NULL, 10);
	{
		struct passwd pw, *res = NULL;

		return !getpwnam_r(who, &pw, buf, sizeof(buf), &res) && res && pw.pw_uid == c->uid;
	}
}

/* TARGET against the request's "to": the same text, or the same host. */
static bool target_matches(const char *target, const char *to)
{
	char host[TOK], port[32], bracketed[TOK + 2];

	if (!strcmp(target, "*") || !strcmp(target, to))
		return true;
	if (tp_parse_hostport(to, host, sizeof(host), port, sizeof(port)))
		return false;
	snprintf(bracketed, sizeof(bracketed), "[%s]", host);
	return !strcmp(target, host) || !strcmp(target, bracketed);
}

int mgauth_may_send(const struct creds *caller, const char *to, char *err, size_t errlen)
{
	struct policy *p;
	int ret = -1;

	if (caller->uid == 0)
		return 0;
	p = malloc(sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (load(p, err, errlen))
		goto out;
	for (int i = 0; i < p->n; i++)
		if (p->r[i].kind == R_SEND && who_matches(p->r[i].who, caller) &&
		    target_matches(p->r[i].to, to)) {
			ret = 0;
			goto out;
		}
	snprintf(err, errlen,
	         "uid %u may not push or migrate to %s: no `send` rule in %s allows it "
	         "(docs/migration.md, \"Who may migrate\")",
	         caller->uid, to, policy_file);
out:
	free(p);
	return ret;
}

/* ---- receive ---- */

static bool src_matches(const char *src, uid_t uid)
{
	char a[TOK], *dash;

	if (all_digits(src))
		return uid == (uid_t)strtoul(src, NULL, 10);
	/* Root's jobs only by a rule that names uid 0 alone. */
	if (uid == 0)
		return false;
	if (!strcmp(src, "*"))
		return true;
	snprintf(a, sizeof(a), "%s", src);
	dash = strchr(a, '-');
	*dash = '\0';
	return uid >= (uid_t)strtoul(a, NULL, 10) && uid <= (uid_t)strtoul(dash + 1, NULL, 10);
}

/* ADDR against PEER, "ADDR:PORT" or "[ADDR]:PORT". */
static bool addr_matches(const char *addr, const char *peer)
{
	char host[TOK];
	const char *end;

	if (!strcmp(addr, "*"))
		return true;
	if (peer[0] == '[') {
		peer++;
		end = strchr(peer, ']');
	} else {
		end = strrchr(peer, ':');
	}
	if (!end || (size_t)(end - peer) >= sizeof(host))
		return false;
	snprintf(host, sizeof(host), "%.*s", (int)(end - peer), peer);
	return !strcmp(addr, host);
}

/* LOCAL of a rule: the local uid it names. */
static int local_uid(const char *local, uid_t job_uid, uid_t *uid)
{
	struct passwd pw, *res = NULL;
	char buf[4096];

	if (!strcmp(local, "same")) {
		*uid = job_uid;
		return 0;
	}
	if (all_digits(local)) {
		*uid = (uid_t)strtoul(local, NULL, 10);
		return 0;
	}
	if (getpwnam_r(local, &pw, buf, sizeof(buf), &res) || !res)
		return -1;
	*uid = pw.pw_uid;
	return 0;
}

static const struct rule *find_receive(const struct policy *p, uid_t job_uid, const char *peer)
{
	static const struct rule root_default = {R_RECEIVE, 0, "0", "root", "*"};

	if (!p->present)
		return job_uid == 0 ? &root_default : NULL;
	for (int i = 0; i < p->n; i++)
		if (p->r[i].kind == R_RECEIVE && src_matches(p->r[i].who, job_uid) &&
		    addr_matches(p->r[i].from, peer))
			return &p->r[i];
	return NULL;
}

/* The job keeps only groups its local user has here. */
static int check_groups(const struct creds *local, gid_t job_gid, const gid_t *groups, int n,
                        char *err, size_t errlen)
{
	if (!in_groups(local, job_gid)) {
		snprintf(err, errlen, "the job's group %u is not a group of uid %u on this host",
		         job_gid, local->uid);
		return -1;
	}
	for (int i = 0; i < n; i++)
		if (!in_groups(local, groups[i])) {
			snprintf(err, errlen,
			         "the job's supplementary group %u is not a group of uid %u on "
			         "this host",
			         groups[i], local->uid);
			return -1;
		}
	return 0;
}

static int decide(const struct policy *p, uid_t job_uid, gid_t job_gid, const gid_t *groups, int n,
                  long sender, const char *peer, struct mgauth_local *out, char *err, size_t errlen)
{
	const struct rule *r = find_receive(p, job_uid, peer);
	struct creds local;
	uid_t uid;

	if (sender != 0 && (job_uid == 0 || sender != (long)job_uid)) {
		snprintf(err, errlen,
		         "a job of uid %u sent at the request of %s: only root or the job's "
		         "owner may send it",
		         job_uid, sender < 0 ? "an unnamed user" : "another user");
		return -1;
	}
	if (!r) {
		snprintf(err, errlen,
		         "jobs of uid %u from %s may not land here: no `receive` rule in %s",
		         job_uid, peer, policy_file);
		return -1;
	}
	if (local_uid(r->to, job_uid, &uid) || creds_from_uid(uid, &local)) {
		snprintf(err, errlen, "%s line %d: no local user %s", policy_file, r->line, r->to);
		return -1;
	}
	if (uid == 0 && job_uid != 0) {
		snprintf(err, errlen, "%s line %d maps uid %u to root: refused", policy_file,
		         r->line, job_uid);
		return -1;
	}
	if (uid != job_uid) {
		snprintf(err, errlen,
		         "%s line %d maps uid %u to uid %u: CRIU restores the ids its images "
		         "hold, so a job can only land as its own uid",
		         policy_file, r->line, job_uid, uid);
		return -1;
	}
	if (check_groups(&local, job_gid, groups, n, err, errlen))
		return -1;
	out->uid = local.uid;
	out->gid = job_gid;
	return 0;
}

int mgauth_receive(uid_t job_uid, gid_t job_gid, const gid_t *groups, int n, long sender,
                   const char *peer, struct mgauth_local *out, char *err, size_t errlen)
{
	struct policy *p = malloc(sizeof(*p));
	int ret = -1;

	if (!p) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (!load(p, err, errlen))
		ret = decide(p, job_uid, job_gid, groups, n, sender, peer, out, err, errlen);
	free(p);
	return ret;
}

int mgauth_receive_record(json_t *job, long sender, const char *peer, char *err, size_t errlen)
{
	gid_t groups[CREDS_MAX_GROUPS];
	struct mgauth_local local;
	json_int_t uid = -1, gid = -1;
	json_t *g = NULL, *v;
	size_t i;
	int n = 0;

	if (json_unpack(job, "{s:I, s:I, s?o}", "uid", &uid, "gid", &gid, "groups", &g) ||
	    uid < 0 || gid < 0 || uid > UINT32_MAX - 1 || gid > UINT32_MAX - 1 ||
	    (g && !json_is_array(g)) || json_array_size(g) > CREDS_MAX_GROUPS) {
		snprintf(err, errlen, "bad job record: uid, gid or groups");
		return -1;
	}
	json_array_foreach(g, i, v)
	{
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > UINT32_MAX - 1) {
			snprintf(err, errlen, "bad job record: groups");
			return -1;
		}
		groups[n++] = (gid_t)json_integer_value(v);
	}
	return mgauth_receive((uid_t)uid, (gid_t)gid, groups, n, sender, peer, &local, err, errlen);
}
