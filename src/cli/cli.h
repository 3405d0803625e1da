/*
 * cli.h - what the stasis subcommands share: the daemon client and output
 * helpers. Each subcommand lives in cmd_<name>.c with one entry function,
 * listed in the table in stasis.c.
 */
#ifndef STASIS_CLI_H
#define STASIS_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#define DEFAULT_SOCKET    "/run/stasis/stasisd.sock"
#define DEFAULT_STATE_DIR "/var/lib/stasis"

/* Socket of the daemon: --socket, else $STASIS_SOCKET, else the default. */
extern const char *cli_socket;

/* A reply from the daemon. */
struct reply {
	long status;  /* HTTP status; 0 if the daemon could not be reached */
	json_t *json; /* parsed JSON body, or NULL */
	char *body;   /* raw body, NUL-terminated */
	size_t len;
	char offset[32], size[32], running[8]; /* log headers */
	char error[512];                       /* transport error when status == 0 */
};

/*
 * METHOD PATH with an optional JSON BODY (not consumed). Returns 0 when the
 * daemon answered 2xx; otherwise prints the daemon's error (or why it could
 * not be reached) to stderr and returns -1. Free R with reply_free().
 */
int api(const char *method, const char *path, json_t *body, struct reply *r);
/* Same, but prints nothing: for probing. */
int api_quiet(const char *method, const char *path, json_t *body, struct reply *r);
void reply_free(struct reply *r);
/* Print why a call failed (the daemon's error, or why it could not be reached). */
void report_error(const struct reply *r);

/* Is a daemon answering on cli_socket? */
bool daemon_alive(void);

/* "stasis: error: ..." on stderr. */
void die_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* URL-escape S into a static-free malloc'ed string. */
char *url_escape(const char *s);
/* Make PATH absolute against the current directory (malloc'ed). */
char *abs_path(const char *path);
/* The daemon's state dir: $STASIS_STATE_DIR or the default. */
const char *state_dir_default(void);
/* Directory of this executable (for finding stasisd and stasis-streamer). */
const char *self_dir(void);
/* "/v1/jobs/<ID escaped>SUFFIX" into BUF (SUFFIX: "/dump", "?force=1", "" ...). */
void job_path(char *buf, size_t len, const char *id, const char *suffix);
/* Print J indented, and a newline: what --json prints. */
void print_json(json_t *j);
/* Print "Success HEAD stats={compact stats of J}" as the users' tool did. */
void print_success(const char *head, json_t *j);
/* Check a --stream ARG (a shard count, 1 to 64) and put it into REQ as "stream".
 * 0, or -1 with a message. */
int parse_stream_arg(const char *arg, json_t *req);
/* Check a --timeout ARG (seconds without progress, 0 = none) into REQ as "timeout". */
int parse_timeout_arg(const char *arg, json_t *req);
/* Print human byte count into BUF. */
const char *human_bytes(double n, char *buf, size_t len);

/* A progress line on stderr (a terminal only) while a dump or restore of ID runs. */
void progress_start(const char *id);
void progress_stop(void);
/* POST REQ to OP_PATH like api() (errors printed), showing the progress line of
 * job ID while it runs when WITH_LINE. */
int api_with_progress(const char *id, bool with_line, const char *op_path, json_t *req,
                      struct reply *r);

/* The job ID after the options: "job ID" or "ID". 0 or -1. */
int parse_job_arg(int argc, char **argv, int optind_, const char **id);

/* Which job a dump or restore means when it names none (jobpick.c). */
enum job_pick {
	PICK_RUNNING,    /* the caller's only job that is running */
	PICK_RESTORABLE, /* the caller's only job with a checkpoint that is not running */
};
/*
 * The job ID after the options into ID ("job ID" or "ID"); with none ("job"
 * or nothing), the caller's only job that fits WANT. 0; 2 on bad usage (no
 * message); 1 when no job or several fit (the error, listing them, printed).
 */
int job_arg_or_pick(int argc, char **argv, int optind_, enum job_pick want, char *id,
                    size_t len);

int cmd_exec(int argc, char **argv);
int cmd_ps(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_kill(int argc, char **argv);
int cmd_logs(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_checkpoints(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_daemon(int argc, char **argv);
int cmd_reset(int argc, char **argv);

#endif
