/*
 * db.h - the daemon's durable state: jobs and checkpoints in SQLite (WAL).
 *
 * Every change is committed before the API answers, so a daemon killed at any
 * moment loses no job and no checkpoint. One connection, serialized by SQLite
 * itself (SQLITE_OPEN_FULLMUTEX); callers need no lock of their own.
 */
#ifndef STASIS_DB_H
#define STASIS_DB_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#define JOB_ID_MAX 64

/* Job states as stored; "killed" covers death by signal and dump-and-stop. */
#define ST_RUNNING "running"
#define ST_DONE    "done"
#define ST_KILLED  "killed"
#define ST_FAILED  "failed"

struct job {
	char id[JOB_ID_MAX + 1];
	uid_t uid;
	gid_t gid;
	char *groups; /* JSON array of gids */
	char *cmd;
	char *workdir;
	char *env; /* JSON array of "K=V" given by the user */
	char *log; /* path of the job's output log */
	bool gpu;
	pid_t pid;
	uint64_t start; /* proc_start_time of pid */
	char state[16];
	int exit_code;    /* -1: unknown */
	int signal;       /* 0: none */
	char *checkpoint; /* latest checkpoint dir, or NULL */
	int64_t created;  /* wall ms */
	int64_t updated;
	bool pidns; /* PID 1 of a PID namespace of its own (pidns.h) */
};

struct ckpt {
	int64_t id;
	char job[JOB_ID_MAX + 1];
	char *dir;
	uid_t uid; /* owner of the job and of the files */
	pid_t pid; /* PID of the job when dumped */
	bool streamed;
	int shards;
	char *codec;
	bool leave_running;
	char *criu_opts; /* JSON array of CRIU options to repeat on restore */
	uint64_t size;
	char *stats;  /* JSON object as reported */
	char *digest; /* SHA-256 over the checkpoint's files */
	int64_t created;
	/* The directory's identity when it was recorded (0/0: recorded before
	 * identities were kept); a restore acts only on that directory. */
	uint64_t dev, ino;
};

/*
 * A dump or restore in flight, written just before CRIU starts and removed when
 * the operation ends: after a crash of the daemon it tells the next one what to
 * finish (recover.c).
 */
struct op_rec {
	char job[JOB_ID_MAX + 1];
	char op[16]; /* "dump" or "restore" */
	char *dir;
	pid_t criu_pid, helper_pid; /* CRIU and the streamer (0: none) */
	uint64_t criu_start, helper_start;
	bool leave_running;
	int stream;
	char *codec;
	char *criu_opts;
	int64_t created;
	uint64_t dev, ino; /* identity of DIR when the op began (0/0: unknown) */
};

int db_open(const char *path);
void db_close(void);

void job_free(struct job *j);
void ckpt_free(struct ckpt *c);

/* 0, -ENOENT, or -EIO. */
int db_job_get(const char *id, struct job *j);
/* -EEXIST when the ID is taken. */
int db_job_insert(const struct job *j);
/* Every job; *out is an array of N jobs (free each, then the array). */
int db_job_list(struct job **out, int *n);
/* The jobs of UID only (the query filters: other users' rows are never read). */
int db_job_list_uid(uid_t uid, struct job **out, int *n);
/* How many job rows UID has (running or not); -EIO on error. */
int db_job_count_uid(uid_t uid);
int db_job_delete(const char *id);
/* Does any job (whatever its state) have PID as its process? */
bool db_job_has_pid(pid_t pid);
/*
 * Record that PID/START ended. Only applies while the job is still "running"
 * with that pid and start time (a dump or restore may have moved on).
 */
int db_job_ended(const char *id, pid_t pid, uint64_t start, const char *state, int code, int sig);
/* Record a completed dump: the job's latest checkpoint; KILLED: it was stopped by it. */
int db_job_checkpointed(const char *id, const char *dir, bool killed);
/* Unconditional update of state, pid, start, exit code, signal, checkpoint. */
int db_job_update(const struct job *j);

int db_ckpt_insert(struct ckpt *c);
/* Checkpoints of JOB (NULL: all), oldest first. */
int db_ckpt_list(const char *job, struct ckpt **out, int *n);
/* The checkpoint recorded at DIR, or -ENOENT. */
int db_ckpt_by_dir(const char *dir, struct ckpt *c);
int db_ckpt_delete_dir(const char *dir);
int db_ckpt_delete_job(const char *job);

int db_op_begin(const struct op_rec *o);
int db_op_end(const char *job);
int db_op_list(struct op_rec **out, int *n);
void op_rec_free(struct op_rec *o);

/*
 * A lazy restore whose pages are still coming in (lazy.h), written when the
 * job is handed to its watch and removed when every page is in or the job was
 * killed: after a restart of the daemon it tells the next one which
 * lazy-pages daemon to take back, or which job to kill.
 */
struct lazy_rec {
	char job[JOB_ID_MAX + 1];
	pid_t pid;          /* the lazy-pages daemon ... */
	uint64_t start;     /* ... and its start time (proc_start_time) */
	pid_t job_pid;      /* the restored job's top process ... */
	uint64_t job_start; /* ... and its start time */
	char *work;         /* CRIU's work dir: the daemon's log is there */
	char *images;       /* extracted images to remove once done, or "" */
	int timeout_s;      /* the daemon's no-progress bound; 0: none */
	int64_t created;    /* wall ms */
	/* A plain checkpoint's pages files are checked against its digest while
	 * the pages come in (lazy.h): its directory (path and identity), the
	 * digest, and whether that check passed; "" / 0: no check to do. */
	char *ckdir;
	uint64_t ckdev, ckino;
	char *digest;
	bool checked;
	bool hold; /* the tree stays stopped until every page is in (struct lazy) */
};

int db_lazy_put(const struct lazy_rec *r);
int db_lazy_del(const char *job);
/* The pages files' check of JOB's pending lazy restore passed. */
int db_lazy_checked(const char *job);
int db_lazy_list(struct lazy_rec **out, int *n);
void lazy_rec_free(struct lazy_rec *r);

json_t *job_to_json(const struct job *j);
json_t *ckpt_to_json(const struct ckpt *c);

#endif
