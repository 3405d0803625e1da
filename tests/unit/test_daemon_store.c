/*
 * test_daemon_store.c - the daemon's process helpers (src/daemon/proc.c), its
 * SQLite store (db.c) and checkpoint-directory checks (ckdir.c), on real
 * processes, a real database and real files. The modules are compiled in here
 * directly so their static helpers are reachable too.
 */
#include "../../src/daemon/proc.c"
#include "../../src/daemon/pidns.c"
#include "../../src/daemon/db.c"
#include "../../src/daemon/ckdir.c"

#include <signal.h>
#include <sys/stat.h>

#include "unit.h"

static char tmp[64];

static pid_t sleeper(void)
{
	pid_t pid = fork();

	if (pid == 0) {
		pause();
		_exit(0);
	}
	return pid;
}

TEST(proc_is_names_one_process)
{
	pid_t pid = sleeper();
	uint64_t start = 0;

	usleep(10000);
	CHECK_EQ_INT(proc_start_time(pid, &start), 0);
	CHECK(proc_is(pid, start));
	CHECK(!proc_is(pid, start + 1)); /* same PID, another start: another process */
	kill(pid, SIGKILL);
	usleep(50000);
	CHECK(!proc_is(pid, start)); /* a zombie is not alive */
	waitpid(pid, NULL, 0);
	CHECK(!proc_is(pid, start));
	CHECK(!proc_is(0, 0));
}

TEST(pid_in_use_sees_process_and_session)
{
	char who[128];
	pid_t pid = sleeper();

	CHECK(pid_in_use(pid, who, sizeof(who)));
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	/* Our own session and group ID hold our PID even though we are alive anyway. */
	CHECK(pid_in_use(getsid(0), who, sizeof(who)));
}

TEST(spawn_reports_phase_and_status)
{
	char *bad[] = {"/nonexistent/prog", NULL};
	char *sh[] = {"/bin/sh", "-c", "exit 3", NULL};
	struct spawn_opts o = {.argv = bad,
	                       .stdin_fd = -1,
	                       .stdout_fd = -1,
	                       .stderr_fd = -1,
	                       .keep_fd = -1,
	                       .umask = 022};
	const char *phase = NULL;
	int status = 0;
	pid_t pid;

	CHECK_EQ_INT(spawn(&o, &pid, &phase), -ENOENT);
	CHECK_EQ_STR(phase, "exec");
	o.argv = sh;
	o.cwd = "/nonexistent-dir";
	CHECK_EQ_INT(spawn(&o, &pid, &phase), -ENOENT);
	CHECK_EQ_STR(phase, "chdir");
	o.cwd = NULL;
	CHECK_EQ_INT(spawn(&o, &pid, &phase), 0);
	CHECK_EQ_INT(wait_child(pid, &status, 5000), 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 3);
}

TEST(wait_child_times_out_and_kills)
{
	char *argv[] = {"/bin/sleep", "100", NULL};
	struct spawn_opts o = {.argv = argv,
	                       .stdin_fd = -1,
	                       .stdout_fd = -1,
	                       .stderr_fd = -1,
	                       .keep_fd = -1,
	                       .umask = 022};
	const char *phase;
	int status;
	pid_t pid;

	CHECK_EQ_INT(spawn(&o, &pid, &phase), 0);
	CHECK_EQ_INT(wait_child(pid, &status, 100), -ETIMEDOUT);
	CHECK(kill(pid, 0) != 0);
}

TEST(run_capture_collects_output)
{
	char *argv[] = {"/bin/sh", "-c", "echo hello; echo err >&2", NULL};
	char out[64];
	int status;

	CHECK_EQ_INT(run_capture(argv, out, sizeof(out), 5000, &status), 0);
	CHECK_EQ_STR(out, "hello\nerr\n");
}

static int try_mkdir(void *arg, char *out, size_t len)
{
	snprintf(out, len, "tried");
	return mkdir(arg, 0700) ? -errno : 0;
}

TEST(as_user_has_the_users_rights_only)
{
	struct creds nobody = {.uid = 65534, .gid = 65534};
	char path[128], out[64];

	snprintf(path, sizeof(path), "%s/private", tmp);
	mkdir(path, 0700);
	strcat(path, "/x");
	CHECK_EQ_INT(as_user(&nobody, try_mkdir, path, out, sizeof(out)), -EACCES);
	CHECK_EQ_STR(out, "tried");
	CHECK(access(path, F_OK) != 0);
}

static void fill_job(struct job *j, const char *id, pid_t pid, uint64_t start)
{
	memset(j, 0, sizeof(*j));
	snprintf(j->id, sizeof(j->id), "%s", id);
	j->uid = 1000;
	j->gid = 1000;
	j->groups = "[1000]";
	j->cmd = "true";
	j->workdir = "/";
	j->env = "[]";
	j->log = "/tmp/x.log";
	j->pid = pid;
	j->start = start;
	snprintf(j->state, sizeof(j->state), "%s", ST_RUNNING);
	j->exit_code = -1;
}

TEST(db_jobs_roundtrip)
{
	char path[128];
	struct job j, g;
	struct job *v;
	int n;

	snprintf(path, sizeof(path), "%s/t.db", tmp);
	CHECK_EQ_INT(db_open(path), 0);
	fill_job(&j, "a", 100, 555);
	CHECK_EQ_INT(db_job_insert(&j), 0);
	CHECK_EQ_INT(db_job_insert(&j), -EEXIST);
	CHECK_EQ_INT(db_job_get("a", &g), 0);
	CHECK_EQ_STR(g.state, ST_RUNNING);
	CHECK_EQ_INT(g.start, 555);
	job_free(&g);
	CHECK_EQ_INT(db_job_get("zz", &g), -ENOENT);
	CHECK(db_job_has_pid(100));
	CHECK(!db_job_has_pid(101));
	/* An end reported for another process (start time) changes nothing. */
	CHECK_EQ_INT(db_job_ended("a", 100, 556, ST_DONE, 0, 0), 0);
	db_job_get("a", &g);
	CHECK_EQ_STR(g.state, ST_RUNNING);
	job_free(&g);
	CHECK_EQ_INT(db_job_ended("a", 100, 555, ST_DONE, 3, 0), 0);
	db_job_get("a", &g);
	CHECK_EQ_STR(g.state, ST_DONE);
	CHECK_EQ_INT(g.exit_code, 3);
	job_free(&g);
	CHECK_EQ_INT(db_job_checkpointed("a", "/ck", true), 0);
	db_job_get("a", &g);
	CHECK_EQ_STR(g.state, ST_KILLED);
	CHECK_EQ_STR(g.checkpoint, "/ck");
	job_free(&g);
	fill_job(&j, "b", 200, 1);
	db_job_insert(&j);
	CHECK_EQ_INT(db_job_list(&v, &n), 0);
	CHECK_EQ_INT(n, 2);
	for (int i = 0; i < n; i++)
		job_free(&v[i]);
	free(v);
	CHECK_EQ_INT(db_job_delete("b"), 0);
	db_close();
	/* Reopened: everything is still there (what a daemon restart sees). */
	CHECK_EQ_INT(db_open(path), 0);
	CHECK_EQ_INT(db_job_get("a", &g), 0);
	CHECK_EQ_STR(g.checkpoint, "/ck");
	job_free(&g);
	CHECK_EQ_INT(db_job_get("b", &g), -ENOENT);
	db_close();
}

/* A pending lazy restore's record (lazy.h) outlives the daemon, until it is settled. */
TEST(db_lazy_roundtrip)
{
	char path[128];
	struct lazy_rec r = {.pid = 42,
	                     .start = 7,
	                     .job_pid = 100,
	                     .job_start = 555,
	                     .work = "/st/work/a.restore",
	                     .images = "",
	                     .timeout_s = 60,
	                     .created = 1,
	                     .ckdir = "/ck",
	                     .ckdev = 3,
	                     .ckino = 4,
	                     .digest = "{\"x\":\"y\"}",
	                     .hold = true};
	struct lazy_rec *v;
	int n;

	snprintf(path, sizeof(path), "%s/l.db", tmp);
	CHECK_EQ_INT(db_open(path), 0);
	snprintf(r.job, sizeof(r.job), "a");
	CHECK_EQ_INT(db_lazy_put(&r), 0);
	CHECK_EQ_INT(db_lazy_checked("a"), 0);
	db_close();
	/* Reopened: what a restarted daemon reads. */
	CHECK_EQ_INT(db_open(path), 0);
	CHECK_EQ_INT(db_lazy_list(&v, &n), 0);
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_STR(v[0].job, "a");
	CHECK_EQ_INT(v[0].pid, 42);
	CHECK_EQ_INT(v[0].start, 7);
	CHECK_EQ_INT(v[0].job_pid, 100);
	CHECK_EQ_INT(v[0].job_start, 555);
	CHECK_EQ_STR(v[0].work, "/st/work/a.restore");
	CHECK_EQ_STR(v[0].ckdir, "/ck");
	CHECK_EQ_INT(v[0].ckino, 4);
	CHECK(v[0].checked);
	CHECK(v[0].hold);
	lazy_rec_free(&v[0]);
	free(v);
	CHECK_EQ_INT(db_lazy_del("a"), 0);
	CHECK_EQ_INT(db_lazy_list(&v, &n), 0);
	CHECK_EQ_INT(n, 0);
	free(v);
	db_close();
}

TEST(db_checkpoints_roundtrip)
{
	char path[128];
	struct ckpt c = {0}, g;
	struct ckpt *v;
	int n;

	snprintf(path, sizeof(path), "%s/c.db", tmp);
	CHECK_EQ_INT(db_open(path), 0);
	snprintf(c.job, sizeof(c.job), "a");
	c.dir = "/ck1";
	c.streamed = true;
	c.shards = 8;
	c.digest = "{\"x\":\"y\"}";
	CHECK_EQ_INT(db_ckpt_insert(&c), 0);
	CHECK_EQ_INT(db_ckpt_insert(&c), -EEXIST); /* one record per directory */
	c.dir = "/ck2";
	CHECK_EQ_INT(db_ckpt_insert(&c), 0);
	CHECK_EQ_INT(db_ckpt_list("a", &v, &n), 0);
	CHECK_EQ_INT(n, 2);
	CHECK_EQ_STR(v[n - 1].dir, "/ck2"); /* latest last */
	for (int i = 0; i < n; i++)
		ckpt_free(&v[i]);
	free(v);
	CHECK_EQ_INT(db_ckpt_by_dir("/ck1", &g), 0);
	CHECK_EQ_INT(g.shards, 8);
	CHECK_EQ_STR(g.digest, "{\"x\":\"y\"}");
	ckpt_free(&g);
	CHECK_EQ_INT(db_ckpt_delete_dir("/ck1"), 0);
	CHECK_EQ_INT(db_ckpt_by_dir("/ck1", &g), -ENOENT);
	CHECK_EQ_INT(db_ckpt_delete_job("a"), 0);
	CHECK_EQ_INT(db_ckpt_list("a", &v, &n), 0);
	CHECK_EQ_INT(n, 0);
	free(v);
	db_close();
}

static void put(int dfd, const char *name, const char *text)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd >= 0) {
		write_all(fd, text, strlen(text));
		close(fd);
	}
}

/* A fresh, empty directory NAME under tmp, opened with ckdir_open. */
static int new_ckdir(const char *name)
{
	char dir[128];

	snprintf(dir, sizeof(dir), "%s/%s", tmp, name);
	mkdir(dir, 0700);
	return ckdir_open(dir);
}

TEST(ckdir_digest_catches_any_change)
{
	char *digest = NULL, err[256];
	int dfd;

	dfd = new_ckdir("ck");
	CHECK(dfd >= 0);
	CHECK_EQ_INT(ckdir_kind(dfd), CK_NONE);
	put(dfd, "inventory.img", "inv");
	put(dfd, "pages-1.img", "pages");
	put(dfd, "dump.log", "log");
	CHECK_EQ_INT(ckdir_kind(dfd), CK_PLAIN);
	CHECK_EQ_INT(ckdir_digest(dfd, &digest), 0);
	CHECK(digest && strstr(digest, "pages-1.img") && !strstr(digest, "dump.log"));
	CHECK_EQ_INT(ckdir_verify(dfd, digest, err, sizeof(err)), 0);
	put(dfd, "dump.log", "log grew"); /* logs are not part of the checkpoint */
	put(dfd, "restore.log", "new");
	CHECK_EQ_INT(ckdir_verify(dfd, digest, err, sizeof(err)), 0);
	put(dfd, "pages-1.img", "pagez");
	CHECK(ckdir_verify(dfd, digest, err, sizeof(err)) != 0);
	CHECK(strstr(err, "pages-1.img changed") != NULL);
	put(dfd, "pages-1.img", "pages");
	put(dfd, "core-1.img", "forged");
	CHECK(ckdir_verify(dfd, digest, err, sizeof(err)) != 0);
	CHECK(strstr(err, "core-1.img was added") != NULL);
	unlinkat(dfd, "core-1.img", 0);
	unlinkat(dfd, "inventory.img", 0);
	CHECK(ckdir_verify(dfd, digest, err, sizeof(err)) != 0);
	CHECK(strstr(err, "inventory.img is missing") != NULL);
	CHECK(ckdir_verify(dfd, "", err, sizeof(err)) != 0);
	free(digest);
	close(dfd);
}

/* Files are hashed on several threads: each value must still be its own file's. */
TEST(ckdir_digest_many_files_each_its_own)
{
	/* SHA-256("abc"); one file holds "abd" instead. */
	const char *abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
	char name[32], *digest = NULL, err[256];
	json_t *obj;
	int dfd;

	dfd = new_ckdir("ckm");
	CHECK(dfd >= 0);
	put(dfd, "inventory.img", "abc");
	for (int i = 1; i <= 40; i++) {
		snprintf(name, sizeof(name), "pages-%d.img", i);
		put(dfd, name, i == 17 ? "abd" : "abc");
	}
	CHECK_EQ_INT(ckdir_digest(dfd, &digest), 0);
	obj = json_loads(digest ? digest : "", 0, NULL);
	CHECK(json_is_object(obj) && json_object_size(obj) == 41);
	for (int i = 1; i <= 40; i++) {
		snprintf(name, sizeof(name), "pages-%d.img", i);
		CHECK_EQ_INT(!strcmp(json_string_value(json_object_get(obj, name)) ?: "", abc),
		             i != 17);
	}
	CHECK_EQ_INT(ckdir_verify(dfd, digest, err, sizeof(err)), 0);
	put(dfd, "pages-17.img", "abc");
	CHECK(ckdir_verify(dfd, digest, err, sizeof(err)) != 0);
	CHECK(strstr(err, "pages-17.img changed") != NULL);
	json_decref(obj);
	free(digest);
	close(dfd);
}

TEST(ckdir_digest_fast_kind_verifies)
{
	char *digest = NULL, err[256];
	int dfd;

	dfd = new_ckdir("ckx");
	CHECK(dfd >= 0);
	put(dfd, "inventory.img", "inv");
	put(dfd, "pages-1.img", "pages");
	CHECK_EQ_INT(ckdir_digest_kind(dfd, false, &digest), 0);
	CHECK(digest && strstr(digest, "\"xxh3-128:") != NULL);
	CHECK_EQ_INT(ckdir_verify(dfd, digest, err, sizeof(err)), 0);
	put(dfd, "pages-1.img", "pagez");
	CHECK(ckdir_verify(dfd, digest, err, sizeof(err)) != 0);
	CHECK(strstr(err, "pages-1.img changed") != NULL);
	free(digest);
	close(dfd);
}

TEST(ckdir_lock_refuses_writers_and_links)
{
	char dir[128], path[192], link_path[192], err[512];
	struct stat st;
	pid_t holder;
	int dfd;

	snprintf(dir, sizeof(dir), "%s/lk", tmp);
	mkdir(dir, 0755);
	dfd = ckdir_open(dir);
	put(dfd, "pages-1.img", "p");
	CHECK_EQ_INT(ckdir_lock(dfd, dir, 1000, err, sizeof(err)), 0);
	fstat(dfd, &st);
	CHECK(st.st_uid == 0 && st.st_gid == 1000 && (st.st_mode & 0777) == 0750);
	ckdir_unlock(dfd, 1000, 1000);
	fstat(dfd, &st);
	CHECK(st.st_uid == 1000 && (st.st_mode & 0777) == 0700);
	/* A reader cannot change what was verified; a writer could. */
	snprintf(path, sizeof(path), "%s/pages-1.img", dir);
	holder = fork();
	if (holder == 0) {
		if (open(path, O_RDWR) >= 0)
			pause();
		_exit(0);
	}
	usleep(200000);
	CHECK_EQ_INT(ckdir_lock(dfd, dir, 0, err, sizeof(err)), -EBUSY);
	CHECK(strstr(err, "in use") != NULL);
	ckdir_unlock(dfd, 0, 0);
	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);
	CHECK_EQ_INT(ckdir_lock(dfd, dir, 0, err, sizeof(err)), 0);
	ckdir_unlock(dfd, 0, 0);
	/* So could a hard link kept elsewhere. */
	snprintf(link_path, sizeof(link_path), "%s/elsewhere", tmp);
	CHECK_EQ_INT(link(path, link_path), 0);
	CHECK_EQ_INT(ckdir_lock(dfd, dir, 0, err, sizeof(err)), -EMLINK);
	ckdir_unlock(dfd, 0, 0);
	unlink(link_path);
	close(dfd);
}

TEST(pidns_names_mounts_by_mount_point)
{
	const char *host = "20 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
	                   "21 20 0:5 / /proc rw - proc proc rw\n"
	                   "22 20 8:1 /srv/a/lib /var/lib/stasis rw - ext4 /dev/sda1 rw\n"
	                   "23 20 0:30 / /mnt/a\\040b]c rw - tmpfs t rw\n"
	                   "24 20 0:31 / /mnt/x:y rw - tmpfs t rw\n";
	const char *job = "30 29 8:1 / / rw - ext4 /dev/sda1 rw\n"
	                  "31 30 8:1 /srv/a/lib /var/lib/stasis rw - ext4 /dev/sda1 rw\n"
	                  "32 30 0:30 / /mnt/a\\040b]c rw - tmpfs t rw\n"
	                  "33 30 0:31 / /mnt/x:y rw - tmpfs t rw\n"
	                  "34 30 0:32 / /mnt/x:y rw - tmpfs t rw\n"
	                  "35 30 0:40 / /scratch rw - tmpfs t rw\n"
	                  "36 30 0:41 / /proc rw - proc proc rw";
	json_t *opts = json_array();
	char **args = NULL, *s;

	/* A usual path is its own key; what CRIU's syntax cannot hold is %XX. */
	s = pidns_mount_key("/var/lib/stasis");
	CHECK_EQ_STR(s, "/var/lib/stasis");
	free(s);
	s = pidns_mount_key("/mnt/a b]c");
	CHECK_EQ_STR(s, "/mnt/a%20b%5Dc");
	free(s);
	s = pidns_key_mount("/mnt/a%20b%5Dc");
	CHECK_EQ_STR(s, "/mnt/a b]c");
	free(s);
	CHECK(!pidns_key_mount("mnt"));
	CHECK(!pidns_key_mount("/a]b"));
	CHECK(!pidns_key_mount("/a%2"));
	CHECK(!pidns_key_mount("/a%00"));

	/* The host's mount points, once each; not the root, /proc or the job's own. */
	CHECK_EQ_INT(pidns_dump_mounts(job, host, opts, &args), 0);
	CHECK_EQ_INT(pidns_args_count(args), 4);
	CHECK_EQ_STR(args[1], "mnt[/var/lib/stasis]:/var/lib/stasis");
	CHECK_EQ_STR(args[3], "mnt[/mnt/x:y]:/mnt/x%3Ay");
	CHECK_EQ_INT(json_array_size(opts), 2);
	pidns_args_free(args);

	/* The restore binds this host's same mount points. */
	json_array_append_new(opts, json_string("--tcp-established"));
	CHECK_EQ_INT(pidns_restore_args(opts, &args), 0);
	CHECK_EQ_INT(pidns_args_count(args), 8);
	CHECK_EQ_STR(args[3], "mnt[]");
	CHECK_EQ_STR(args[5], "mnt[/var/lib/stasis]:/var/lib/stasis");
	CHECK_EQ_STR(args[7], "mnt[/mnt/x%3Ay]:/mnt/x:y");
	pidns_args_free(args);
	json_array_append_new(opts, json_string("mnt:/a]b"));
	CHECK_EQ_INT(pidns_restore_args(opts, &args), -EINVAL);
	CHECK(!args);
	json_decref(opts);

	/* No record of its mounts: every mount point of this host, keyed as a dump would. */
	opts = json_array();
	CHECK_EQ_INT(pidns_restore_args(opts, &args), 0);
	CHECK(pidns_args_count(args) >= 4 && pidns_args_count(args) % 2 == 0);
	for (size_t i = 5; args && i < pidns_args_count(args); i += 2)
		CHECK(!strncmp(args[i], "mnt[/", 5) && strstr(args[i], "]:/"));
	pidns_args_free(args);
	json_decref(opts);
}

int main(void)
{
	char cmd[128];
	int ret;

	snprintf(tmp, sizeof(tmp), "/tmp/stasis-unit-daemon.XXXXXX");
	if (!mkdtemp(tmp))
		return 1;
	log_init("test", LOG_ERROR);
	RUN(proc_is_names_one_process);
	RUN(pid_in_use_sees_process_and_session);
	RUN(spawn_reports_phase_and_status);
	RUN(wait_child_times_out_and_kills);
	RUN(run_capture_collects_output);
	RUN(as_user_has_the_users_rights_only);
	RUN(db_jobs_roundtrip);
	RUN(db_checkpoints_roundtrip);
	RUN(db_lazy_roundtrip);
	RUN(ckdir_digest_catches_any_change);
	RUN(ckdir_digest_many_files_each_its_own);
	RUN(ckdir_digest_fast_kind_verifies);
	RUN(ckdir_lock_refuses_writers_and_links);
	RUN(pidns_names_mounts_by_mount_point);
	ret = unit_report();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	if (system(cmd) != 0)
		ret = 1;
	return ret;
}
