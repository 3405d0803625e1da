/*
 * migrate_cli.h - what `stasis migrate` and `stasis push` share.
 */
#ifndef STASIS_MIGRATE_CLI_H
#define STASIS_MIGRATE_CLI_H

#include <jansson.h>

/* Put the target TO into REQ as "to" and, when TOKEN_FILE is set and not
 * empty, the token read from it (checked like the daemon checks it: mode 0600,
 * at least 16 bytes) as "token". 0, or -1 with a message. */
int cli_add_target(json_t *req, const char *to, const char *token_file);

int cmd_migrate(int argc, char **argv);
int cmd_push(int argc, char **argv);

#endif
