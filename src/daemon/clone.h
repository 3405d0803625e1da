/*
 * clone.h - restore a checkpoint as a new job (`stasis restore job ID --as NEW`).
 *
 * The new job is a copy of job ID's record (owner, command, working directory,
 * environment, PID namespace or not) under the name NEW, with a log of its own,
 * restored from ID's latest checkpoint or from req's "dir" (one of ID's). Job ID,
 * its record and its checkpoints are left as they are; ID may even be running.
 * A job in its own PID namespace (pidns.h) can be cloned any number of times at
 * once; any other needs its old PIDs free, like a restore. Clones of one job are
 * made one at a time (each holds the checkpoint frozen while CRIU reads it).
 * On any failure nothing of NEW remains.
 */
#ifndef STASIS_CLONE_H
#define STASIS_CLONE_H

#include <stddef.h>

#include <jansson.h>

#include "proc.h"

/*
 * POST /v1/jobs/ID/restore: with "as" in REQ, a clone of ID named after it
 * (201 with the restore's answer and "clone_of"); without, ckpt_restore().
 */
int clone_or_restore(const struct creds *caller, const char *id, json_t *req, json_t **out,
                     char *err, size_t errlen);

#endif
