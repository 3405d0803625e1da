/*
 * recover.h - finish what a crashed daemon left half done.
 *
 * CRIU and the streamer are the daemon's children but do not die with it: a
 * dump goes on and, on success, stops the job. Without this, a daemon killed
 * mid-dump would lose that checkpoint (job gone, files never recorded) and
 * leave the directory root's. At startup, for every operation recorded in
 * flight (db.h: struct op_rec) we wait for its CRIU and streamer to end, then
 * record the checkpoint if CRIU reported success and the files are complete,
 * re-adopt a restored process, and give the directory back to its owner.
 */
#ifndef STASIS_RECOVER_H
#define STASIS_RECOVER_H

/* Call after jobs_adopt(): marks each affected job busy and settles it in a thread. */
void recover_ops(void);

#endif
