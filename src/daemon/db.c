/*
 * db.c - SQLite storage of jobs and checkpoints.
 *
 * WAL mode with synchronous=FULL: a committed change survives a crash of the
 * daemon or of the machine. The schema is created on first open.
 */
#include "db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "log.h"

static sqlite3 *db;

static const char schema[] =
        "CREATE TABLE IF NOT EXISTS jobs ("
        " id TEXT PRIMARY KEY, uid INTEGER NOT NULL, gid INTEGER NOT NULL,"
        " groups TEXT NOT NULL, cmd TEXT NOT NULL, workdir TEXT NOT NULL, env TEXT NOT NULL,"
        " log TEXT NOT NULL, gpu INTEGER NOT NULL, pid INTEGER NOT NULL,"
        " start INTEGER NOT NULL, state TEXT NOT NULL, exit_code INTEGER NOT NULL,"
        " signal INTEGER NOT NULL, checkpoint TEXT, created INTEGER NOT NULL,"
        " updated INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS checkpoints ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, dir TEXT NOT NULL UNIQUE,"
        " uid INTEGER NOT NULL, pid INTEGER NOT NULL, streamed INTEGER NOT NULL,"
        " shards INTEGER NOT NULL, codec TEXT NOT NULL, leave_running INTEGER NOT NULL,"
        " criu_opts TEXT NOT NULL, size INTEGER NOT NULL, stats TEXT NOT NULL,"
        " digest TEXT NOT NULL, created INTEGER NOT NULL);"
        "CREATE INDEX IF NOT EXISTS checkpoints_job ON checkpoints(job);"
        "CREATE INDEX IF NOT EXISTS jobs_uid ON jobs(uid);"
        "CREATE TABLE IF NOT EXISTS ops ("
        " job TEXT PRIMARY KEY, op TEXT NOT NULL, dir TEXT NOT NULL, criu_pid INTEGER NOT NULL,"
        " criu_start INTEGER NOT NULL, helper_pid INTEGER NOT NULL, helper_start INTEGER NOT"
        " NULL, leave_running INTEGER NOT NULL, stream INTEGER NOT NULL, codec TEXT NOT NULL,"
        " criu_opts TEXT NOT NULL, created INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS lazy ("
        " job TEXT PRIMARY KEY, pid INTEGER NOT NULL, start INTEGER NOT NULL,"
        " job_pid INTEGER NOT NULL, job_start INTEGER NOT NULL, work TEXT NOT NULL,"
        " images TEXT NOT NULL, timeout_s INTEGER NOT NULL, created INTEGER NOT NULL);";

/* Columns added since the first schema; ADD COLUMN fails once it is there. */
static const char *const added_columns[] = {
        "ALTER TABLE checkpoints ADD COLUMN dev INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE checkpoints ADD COLUMN ino INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE ops ADD COLUMN dev INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE ops ADD COLUMN ino INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN pidns INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE lazy ADD COLUMN ckdir TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE lazy ADD COLUMN ckdev INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE lazy ADD COLUMN ckino INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE lazy ADD COLUMN digest TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE lazy ADD COLUMN checked INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE lazy ADD COLUMN hold INTEGER NOT NULL DEFAULT 0",
};

static void add_columns(void)
{
	for (size_t i = 0; i < sizeof(added_columns) / sizeof(added_columns[0]); i++)
		sqlite3_exec(db, added_columns[i], NULL, NULL, NULL);
}

int db_open(const char *path)
{
	char *err = NULL;

	if (sqlite3_open_v2(path, &db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
	                    NULL) != SQLITE_OK) {
		log_err("cannot open database %s: %s", path, db ? sqlite3_errmsg(db) : "no memory");
		return -EIO;
	}
	sqlite3_busy_timeout(db, 5000);
	if (sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL,
	                 &err) != SQLITE_OK ||
	    sqlite3_exec(db, schema, NULL, NULL, &err) != SQLITE_OK) {
		log_err("database %s: %s", path, err ? err : "error");
		sqlite3_free(err);
		return -EIO;
	}
	add_columns();
	return 0;
}

void db_close(void)
{
	sqlite3_close(db);
	db = NULL;
}

static sqlite3_stmt *prep(const char *sql)
{
	sqlite3_stmt *st = NULL;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		log_err("sql: %s: %s", sqlite3_errmsg(db), sql);
		return NULL;
	}
	return st;
}

/* Step a statement that returns no rows, finalize it. */
static int run(sqlite3_stmt *st)
{
	int rc;

	if (!st)
		return -EIO;
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc == SQLITE_CONSTRAINT)
		return -EEXIST;
	if (rc != SQLITE_DONE) {
		log_err("sql: %s", sqlite3_errmsg(db));
		return -EIO;
	}
	return 0;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
	if (s)
		sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

/* prep() with ARG bound as the text parameter 1: the many "WHERE x = ?" statements. */
static sqlite3_stmt *prep_text(const char *sql, const char *arg)
{
	sqlite3_stmt *st = prep(sql);

	if (st)
		bind_text(st, 1, arg);
	return st;
}

/* What a single-row lookup's last step means: found, absent, or failed. */
static int row_found(int rc)
{
	return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

static char *col_dup(sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);

	return s ? strdup((const char *)s) : NULL;
}

void job_free(struct job *j)
{
	free(j->groups);
	free(j->cmd);
	free(j->workdir);
	free(j->env);
	free(j->log);
	free(j->checkpoint);
	memset(j, 0, sizeof(*j));
}

void ckpt_free(struct ckpt *c)
{
	free(c->dir);
	free(c->codec);
	free(c->criu_opts);
	free(c->stats);
	free(c->digest);
	memset(c, 0, sizeof(*c));
}

#define JOB_COLS                                                                                   \
	"id, uid, gid, groups, cmd, workdir, env, log, gpu, pid, start, state, exit_code,"         \
	" signal, checkpoint, created, updated, pidns"

static void job_row(sqlite3_stmt *st, struct job *j)
{
	memset(j, 0, sizeof(*j));
	snprintf(j->id, sizeof(j->id), "%s", (const char *)sqlite3_column_text(st, 0));
	j->uid = sqlite3_column_int64(st, 1);
	j->gid = sqlite3_column_int64(st, 2);
	j->groups = col_dup(st, 3);
	j->cmd = col_dup(st, 4);
	j->workdir = col_dup(st, 5);
	j->env = col_dup(st, 6);
	j->log = col_dup(st, 7);
	j->gpu = sqlite3_column_int(st, 8);
	j->pid = sqlite3_column_int(st, 9);
	j->start = sqlite3_column_int64(st, 10);
	snprintf(j->state, sizeof(j->state), "%s", (const char *)sqlite3_column_text(st, 11));
	j->exit_code = sqlite3_column_int(st, 12);
	j->signal = sqlite3_column_int(st, 13);
	j->checkpoint = col_dup(st, 14);
	j->created = sqlite3_column_int64(st, 15);
	j->updated = sqlite3_column_int64(st, 16);
	j->pidns = sqlite3_column_int(st, 17);
}

int db_job_get(const char *id, struct job *j)
{
	sqlite3_stmt *st = prep_text("SELECT " JOB_COLS " FROM jobs WHERE id = ?", id);
	int rc;

	if (!st)
		return -EIO;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		job_row(st, j);
	sqlite3_finalize(st);
	return row_found(rc);
}

int db_job_insert(const struct job *j)
{
	sqlite3_stmt *st =
	        prep("INSERT INTO jobs (" JOB_COLS ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");

	if (!st)
		return -EIO;
	bind_text(st, 1, j->id);
	sqlite3_bind_int64(st, 2, j->uid);
	sqlite3_bind_int64(st, 3, j->gid);
	bind_text(st, 4, j->groups);
	bind_text(st, 5, j->cmd);
	bind_text(st, 6, j->workdir);
	bind_text(st, 7, j->env);
	bind_text(st, 8, j->log);
	sqlite3_bind_int(st, 9, j->gpu);
	sqlite3_bind_int(st, 10, j->pid);
	sqlite3_bind_int64(st, 11, (sqlite3_int64)j->start);
	bind_text(st, 12, j->state);
	sqlite3_bind_int(st, 13, j->exit_code);
	sqlite3_bind_int(st, 14, j->signal);
	bind_text(st, 15, j->checkpoint);
	sqlite3_bind_int64(st, 16, j->created);
	sqlite3_bind_int64(st, 17, j->updated);
	sqlite3_bind_int(st, 18, j->pidns);
	return run(st);
}

/* Every row of ST (finalized here) into *OUT. */
static int job_rows(sqlite3_stmt *st, struct job **out, int *n)
{
	struct job *v = NULL;
	int cnt = 0, rc;

	if (!st)
		return -EIO;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct job *nv = realloc(v, (cnt + 1) * sizeof(*v));

		if (!nv)
			break;
		v = nv;
		job_row(st, &v[cnt++]);
	}
	sqlite3_finalize(st);
	*out = v;
	*n = cnt;
	return rc == SQLITE_DONE ? 0 : -EIO;
}

int db_job_list(struct job **out, int *n)
{
	return job_rows(prep("SELECT " JOB_COLS " FROM jobs ORDER BY created, id"), out, n);
}

int db_job_list_uid(uid_t uid, struct job **out, int *n)
{
	sqlite3_stmt *st = prep("SELECT " JOB_COLS " FROM jobs WHERE uid = ? ORDER BY created, id");

	if (st)
		sqlite3_bind_int64(st, 1, uid);
	return job_rows(st, out, n);
}

int db_job_count_uid(uid_t uid)
{
	sqlite3_stmt *st = prep("SELECT COUNT(*) FROM jobs WHERE uid = ?");
	int n = -EIO;

	if (!st)
		return -EIO;
	sqlite3_bind_int64(st, 1, uid);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return n;
}

bool db_job_has_pid(pid_t pid)
{
	sqlite3_stmt *st = prep("SELECT 1 FROM jobs WHERE pid = ? LIMIT 1");
	bool found;

	if (!st)
		return true;
	sqlite3_bind_int(st, 1, pid);
	found = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return found;
}

int db_job_delete(const char *id)
{
	return run(prep_text("DELETE FROM jobs WHERE id = ?", id));
}

int db_job_ended(const char *id, pid_t pid, uint64_t start, const char *state, int code, int sig)
{
	sqlite3_stmt *st = prep("UPDATE jobs SET state = ?, exit_code = ?, signal = ?, updated = "
	                        "CAST(strftime('%s','now') AS INTEGER) * 1000 WHERE id = ? AND "
	                        "state = 'running' AND pid = ? AND start = ?");

	if (!st)
		return -EIO;
	bind_text(st, 1, state);
	sqlite3_bind_int(st, 2, code);
	sqlite3_bind_int(st, 3, sig);
	bind_text(st, 4, id);
	sqlite3_bind_int(st, 5, pid);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)start);
	return run(st);
}

int db_job_checkpointed(const char *id, const char *dir, bool killed)
{
	sqlite3_stmt *st = prep("UPDATE jobs SET checkpoint = ?, state = CASE WHEN ? THEN"
	                        " 'killed' ELSE state END, signal = CASE WHEN ? THEN 9 ELSE signal"
	                        " END, updated = CAST(strftime('%s','now') AS INTEGER) * 1000"
	                        " WHERE id = ?");

	if (!st)
		return -EIO;
	bind_text(st, 1, dir);
	sqlite3_bind_int(st, 2, killed);
	sqlite3_bind_int(st, 3, killed);
	bind_text(st, 4, id);
	return run(st);
}

int db_job_update(const struct job *j)
{
	sqlite3_stmt *st = prep("UPDATE jobs SET state = ?, pid = ?, start = ?, exit_code = ?,"
	                        " signal = ?, checkpoint = ?, updated = ? WHERE id = ?");

	if (!st)
		return -EIO;
	bind_text(st, 1, j->state);
	sqlite3_bind_int(st, 2, j->pid);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)j->start);
	sqlite3_bind_int(st, 4, j->exit_code);
	sqlite3_bind_int(st, 5, j->signal);
	bind_text(st, 6, j->checkpoint);
	sqlite3_bind_int64(st, 7, j->updated);
	bind_text(st, 8, j->id);
	return run(st);
}

#define CKPT_COLS                                                                                  \
	"id, job, dir, uid, pid, streamed, shards, codec, leave_running, criu_opts, size,"         \
	" stats, digest, created, dev, ino"

static void ckpt_row(sqlite3_stmt *st, struct ckpt *c)
{
	memset(c, 0, sizeof(*c));
	c->id = sqlite3_column_int64(st, 0);
	snprintf(c->job, sizeof(c->job), "%s", (const char *)sqlite3_column_text(st, 1));
	c->dir = col_dup(st, 2);
	c->uid = sqlite3_column_int64(st, 3);
	c->pid = sqlite3_column_int(st, 4);
	c->streamed = sqlite3_column_int(st, 5);
	c->shards = sqlite3_column_int(st, 6);
	c->codec = col_dup(st, 7);
	c->leave_running = sqlite3_column_int(st, 8);
	c->criu_opts = col_dup(st, 9);
	c->size = sqlite3_column_int64(st, 10);
	c->stats = col_dup(st, 11);
	c->digest = col_dup(st, 12);
	c->created = sqlite3_column_int64(st, 13);
	c->dev = (uint64_t)sqlite3_column_int64(st, 14);
	c->ino = (uint64_t)sqlite3_column_int64(st, 15);
}

int db_ckpt_insert(struct ckpt *c)
{
	sqlite3_stmt *st = prep("INSERT INTO checkpoints (job, dir, uid, pid, streamed, shards,"
	                        " codec, leave_running, criu_opts, size, stats, digest, created, dev,"
	                        " ino) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
	int rc;

	if (!st)
		return -EIO;
	bind_text(st, 1, c->job);
	bind_text(st, 2, c->dir);
	sqlite3_bind_int64(st, 3, c->uid);
	sqlite3_bind_int(st, 4, c->pid);
	sqlite3_bind_int(st, 5, c->streamed);
	sqlite3_bind_int(st, 6, c->shards);
	bind_text(st, 7, c->codec ? c->codec : "");
	sqlite3_bind_int(st, 8, c->leave_running);
	bind_text(st, 9, c->criu_opts ? c->criu_opts : "[]");
	sqlite3_bind_int64(st, 10, (sqlite3_int64)c->size);
	bind_text(st, 11, c->stats ? c->stats : "{}");
	bind_text(st, 12, c->digest ? c->digest : "");
	sqlite3_bind_int64(st, 13, c->created);
	sqlite3_bind_int64(st, 14, (sqlite3_int64)c->dev);
	sqlite3_bind_int64(st, 15, (sqlite3_int64)c->ino);
	rc = run(st);
	if (!rc)
		c->id = sqlite3_last_insert_rowid(db);
	return rc;
}

int db_ckpt_list(const char *job, struct ckpt **out, int *n)
{
	sqlite3_stmt *st = prep(job ? "SELECT " CKPT_COLS " FROM checkpoints WHERE job = ?"
	                              " ORDER BY id"
	                            : "SELECT " CKPT_COLS " FROM checkpoints ORDER BY id");
	struct ckpt *v = NULL;
	int cnt = 0, rc;

	if (!st)
		return -EIO;
	if (job)
		bind_text(st, 1, job);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct ckpt *nv = realloc(v, (cnt + 1) * sizeof(*v));

		if (!nv)
			break;
		v = nv;
		ckpt_row(st, &v[cnt++]);
	}
	sqlite3_finalize(st);
	*out = v;
	*n = cnt;
	return rc == SQLITE_DONE ? 0 : -EIO;
}

int db_ckpt_by_dir(const char *dir, struct ckpt *c)
{
	sqlite3_stmt *st = prep_text("SELECT " CKPT_COLS " FROM checkpoints WHERE dir = ?", dir);
	int rc;

	if (!st)
		return -EIO;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		ckpt_row(st, c);
	sqlite3_finalize(st);
	return row_found(rc);
}

int db_ckpt_delete_dir(const char *dir)
{
	return run(prep_text("DELETE FROM checkpoints WHERE dir = ?", dir));
}

int db_ckpt_delete_job(const char *job)
{
	return run(prep_text("DELETE FROM checkpoints WHERE job = ?", job));
}

int db_op_begin(const struct op_rec *o)
{
	sqlite3_stmt *st =
	        prep("INSERT OR REPLACE INTO ops (job, op, dir, criu_pid, criu_start,"
	             " helper_pid, helper_start, leave_running, stream, codec, criu_opts,"
	             " created, dev, ino) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)");

	if (!st)
		return -EIO;
	bind_text(st, 1, o->job);
	bind_text(st, 2, o->op);
	bind_text(st, 3, o->dir);
	sqlite3_bind_int(st, 4, o->criu_pid);
	sqlite3_bind_int64(st, 5, (sqlite3_int64)o->criu_start);
	sqlite3_bind_int(st, 6, o->helper_pid);
	sqlite3_bind_int64(st, 7, (sqlite3_int64)o->helper_start);
	sqlite3_bind_int(st, 8, o->leave_running);
	sqlite3_bind_int(st, 9, o->stream);
	bind_text(st, 10, o->codec ? o->codec : "");
	bind_text(st, 11, o->criu_opts ? o->criu_opts : "[]");
	sqlite3_bind_int64(st, 12, o->created);
	sqlite3_bind_int64(st, 13, (sqlite3_int64)o->dev);
	sqlite3_bind_int64(st, 14, (sqlite3_int64)o->ino);
	return run(st);
}

int db_op_end(const char *job)
{
	return run(prep_text("DELETE FROM ops WHERE job = ?", job));
}

int db_op_list(struct op_rec **out, int *n)
{
	sqlite3_stmt *st = prep("SELECT job, op, dir, criu_pid, criu_start, helper_pid,"
	                        " helper_start, leave_running, stream, codec, criu_opts, created,"
	                        " dev, ino FROM ops");
	struct op_rec *v = NULL;
	int cnt = 0, rc;

	if (!st)
		return -EIO;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct op_rec *nv = realloc(v, (cnt + 1) * sizeof(*v)), *o;

		if (!nv)
			break;
		v = nv;
		o = &v[cnt++];
		memset(o, 0, sizeof(*o));
		snprintf(o->job, sizeof(o->job), "%s", (const char *)sqlite3_column_text(st, 0));
		snprintf(o->op, sizeof(o->op), "%s", (const char *)sqlite3_column_text(st, 1));
		o->dir = col_dup(st, 2);
		o->criu_pid = sqlite3_column_int(st, 3);
		o->criu_start = sqlite3_column_int64(st, 4);
		o->helper_pid = sqlite3_column_int(st, 5);
		o->helper_start = sqlite3_column_int64(st, 6);
		o->leave_running = sqlite3_column_int(st, 7);
		o->stream = sqlite3_column_int(st, 8);
		o->codec = col_dup(st, 9);
		o->criu_opts = col_dup(st, 10);
		o->created = sqlite3_column_int64(st, 11);
		o->dev = (uint64_t)sqlite3_column_int64(st, 12);
		o->ino = (uint64_t)sqlite3_column_int64(st, 13);
	}
	sqlite3_finalize(st);
	*out = v;
	*n = cnt;
	return rc == SQLITE_DONE ? 0 : -EIO;
}

void op_rec_free(struct op_rec *o)
{
	free(o->dir);
	free(o->codec);
	free(o->criu_opts);
	memset(o, 0, sizeof(*o));
}

int db_lazy_put(const struct lazy_rec *r)
{
	sqlite3_stmt *st = prep("INSERT OR REPLACE INTO lazy (job, pid, start, job_pid, job_start,"
	                        " work, images, timeout_s, created, ckdir, ckdev, ckino, digest,"
	                        " checked, hold) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");

	if (!st)
		return -EIO;
	bind_text(st, 1, r->job);
	sqlite3_bind_int(st, 2, r->pid);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)r->start);
	sqlite3_bind_int(st, 4, r->job_pid);
	sqlite3_bind_int64(st, 5, (sqlite3_int64)r->job_start);
	bind_text(st, 6, r->work ? r->work : "");
	bind_text(st, 7, r->images ? r->images : "");
	sqlite3_bind_int(st, 8, r->timeout_s);
	sqlite3_bind_int64(st, 9, r->created);
	bind_text(st, 10, r->ckdir ? r->ckdir : "");
	sqlite3_bind_int64(st, 11, (sqlite3_int64)r->ckdev);
	sqlite3_bind_int64(st, 12, (sqlite3_int64)r->ckino);
	bind_text(st, 13, r->digest ? r->digest : "");
	sqlite3_bind_int(st, 14, r->checked);
	sqlite3_bind_int(st, 15, r->hold);
	return run(st);
}

int db_lazy_del(const char *job)
{
	return run(prep_text("DELETE FROM lazy WHERE job = ?", job));
}

int db_lazy_checked(const char *job)
{
	return run(prep_text("UPDATE lazy SET checked = 1 WHERE job = ?", job));
}

int db_lazy_list(struct lazy_rec **out, int *n)
{
	sqlite3_stmt *st = prep("SELECT job, pid, start, job_pid, job_start, work, images,"
	                        " timeout_s, created, ckdir, ckdev, ckino, digest, checked, hold"
	                        " FROM lazy");
	struct lazy_rec *v = NULL;
	int cnt = 0, rc;

	if (!st)
		return -EIO;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct lazy_rec *nv = realloc(v, (cnt + 1) * sizeof(*v)), *r;

		if (!nv)
			break;
		v = nv;
		r = &v[cnt++];
		memset(r, 0, sizeof(*r));
		snprintf(r->job, sizeof(r->job), "%s", (const char *)sqlite3_column_text(st, 0));
		r->pid = sqlite3_column_int(st, 1);
		r->start = (uint64_t)sqlite3_column_int64(st, 2);
		r->job_pid = sqlite3_column_int(st, 3);
		r->job_start = (uint64_t)sqlite3_column_int64(st, 4);
		r->work = col_dup(st, 5);
		r->images = col_dup(st, 6);
		r->timeout_s = sqlite3_column_int(st, 7);
		r->created = sqlite3_column_int64(st, 8);
		r->ckdir = col_dup(st, 9);
		r->ckdev = (uint64_t)sqlite3_column_int64(st, 10);
		r->ckino = (uint64_t)sqlite3_column_int64(st, 11);
		r->digest = col_dup(st, 12);
		r->checked = sqlite3_column_int(st, 13);
		r->hold = sqlite3_column_int(st, 14);
	}
	sqlite3_finalize(st);
	*out = v;
	*n = cnt;
	return rc == SQLITE_DONE ? 0 : -EIO;
}

void lazy_rec_free(struct lazy_rec *r)
{
	free(r->work);
	free(r->images);
	free(r->ckdir);
	free(r->digest);
	memset(r, 0, sizeof(*r));
}

static json_t *json_or_null(const char *text)
{
	json_t *v = text ? json_loads(text, 0, NULL) : NULL;

	return v ? v : json_null();
}

json_t *job_to_json(const struct job *j)
{
	return json_pack(
	        "{s:s, s:s, s:I, s:I, s:o, s:s, s:s, s:o, s:s, s:b, s:i, s:I, s:s,"
	        " s:o, s:o, s:s?, s:I, s:I, s:b}",
	        "id", j->id, "type", "process", "uid", (json_int_t)j->uid, "gid",
	        (json_int_t)j->gid, "groups", json_or_null(j->groups), "cmd", j->cmd, "workdir",
	        j->workdir, "env", json_or_null(j->env), "log", j->log, "gpu", j->gpu, "pid",
	        j->pid, "start_time", (json_int_t)j->start, "state", j->state, "exit_code",
	        j->exit_code >= 0 ? json_integer(j->exit_code) : json_null(), "signal",
	        j->signal ? json_integer(j->signal) : json_null(), "checkpoint", j->checkpoint,
	        "created_ms", (json_int_t)j->created, "updated_ms", (json_int_t)j->updated,
	        "pid_ns", j->pidns);
}

json_t *ckpt_to_json(const struct ckpt *c)
{
	return json_pack("{s:I, s:s, s:s, s:I, s:i, s:b, s:i, s:s, s:b, s:o, s:I, s:o, s:s,"
	                 " s:I}",
	                 "id", (json_int_t)c->id, "job", c->job, "dir", c->dir, "uid",
	                 (json_int_t)c->uid, "pid", c->pid, "streamed", c->streamed, "shards",
	                 c->shards, "codec", c->codec ? c->codec : "", "leave_running",
	                 c->leave_running, "criu_opts", json_or_null(c->criu_opts), "size",
	                 (json_int_t)c->size, "stats", json_or_null(c->stats), "digest",
	                 c->digest ? c->digest : "", "created_ms", (json_int_t)c->created);
}
