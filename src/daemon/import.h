/*
 * import.h - POST /v1/import: record a job and one of its checkpoints that
 * another daemon dumped onto shared storage, so that the ordinary restore
 * brings it back here (the Slurm integration, docs/slurm.md).
 *
 * Root only: the caller vouches for the records (the Slurm plugin checks a
 * signature made by root on the dumping node). What the records cannot
 * vouch for is still checked by restore: a user's checkpoint is restored
 * only if its files match the SHA-256 digest in the record, while the
 * directory is root's.
 */
#ifndef STASIS_IMPORT_H
#define STASIS_IMPORT_H

#include "api.h"

/* Body {"job": job object, "checkpoint": checkpoint record} as GET /v1/jobs/ID
 * and GET /v1/checkpoints give them. STATE_DIR: where this daemon keeps logs. */
void import_h(const struct api_req *rq, struct api_resp *rs, const char *state_dir);

#endif
