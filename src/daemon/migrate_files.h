/*
 * migrate_files.h - the files a job needs that do not travel with it.
 *
 * A migrated job finds its workload's files (executable, libraries, open
 * files, working directory) on the target at the same paths, as on shared
 * storage; only the job's log travels. CRIU would refuse a restore on a
 * missing or resized file with a message deep in its log, after the source
 * job was frozen for nothing. So the source lists what the job's processes
 * use, and the target checks the list before any data is sent, naming every
 * file that is missing or differs.
 */
#ifndef STASIS_MIGRATE_FILES_H
#define STASIS_MIGRATE_FILES_H

#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

/*
 * Every file the process tree rooted at PID uses: executables, file-backed
 * mappings, open regular files, working and root directories. Returns a JSON
 * array of {"path":P, "size":N, "dir":bool, "check_size":bool} (check_size is
 * false for files open for writing: they may change until the job is frozen,
 * and for O_APPEND ones CRIU does not check), skipping SKIP (the job's log)
 * and deleted files. NULL if PID is gone.
 */
json_t *mfiles_collect(pid_t pid, const char *skip);

/* Check LIST (as above) here. 0 if all is well, else -1 and ERR names the
 * missing and differing files. */
int mfiles_check(json_t *list, char *err, size_t errlen);

/* PID and all its descendants, frozen or not: *OUT (malloc'ed), N entries. */
int mfiles_tree(pid_t pid, pid_t **out, size_t *n);

#endif
