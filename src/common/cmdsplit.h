/*
 * cmdsplit.h - decide whether a job's command line needs a shell, and split
 * it into words when it does not.
 *
 * A command runs without a shell when it is only plain words: each word made
 * of characters outside the shell's special set, with optional '...' quoting
 * (taken literally) and "..." quoting (taken literally, and holding none of
 * $ ` \), words separated by spaces or tabs. Anything else needs /bin/sh:
 *   - any of   $ ` \ | & ; < > ( ) * ? [ ] { } ~ # ! =(in the first word)
 *     or a newline / carriage return outside quotes,
 *   - an unterminated quote,
 *   - a first word that is a shell keyword or a builtin with no program
 *     behind it (if, for, cd, exec, export, ., ...), or a first word that
 *     is empty.
 * The rule errs on the shell's side: a command the shell would read
 * differently from this splitter always goes to the shell.
 */
#ifndef STASIS_CMDSPLIT_H
#define STASIS_CMDSPLIT_H

#include <stddef.h>

/*
 * Split CMD. Returns the number of words (>= 1) and sets *ARGV to a
 * malloc'ed NULL-terminated vector whose strings live in the same block
 * (one free(*ARGV) releases all); 0 when CMD needs a shell (*ARGV is NULL);
 * -ENOMEM.
 */
int cmd_split(const char *cmd, char ***argv);

#endif
