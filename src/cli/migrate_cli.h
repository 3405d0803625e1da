/*
 * migrate_cli.h - what `stasis migrate` and `stasis push` share.
 */
#ifndef STASIS_MIGRATE_CLI_H
#define STASIS_MIGRATE_CLI_H

#include <jansson.h>

/* Read the token in PATH (checked like the daemon checks it: mode 0600, at
 * least 16 bytes) and put it into REQ as "token". 0, or -1 with a message. */
int cli_add_token(json_t *req, const char *path);

int cmd_migrate(int argc, char **argv);
int cmd_push(int argc, char **argv);

#endif
