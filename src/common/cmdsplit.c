/*
 * cmdsplit.c - plain command lines into argv, everything else to the shell.
 */
#include "cmdsplit.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Outside quotes these make the shell do something a plain split would not. */
#define SHELL_CHARS "$`\\|&;<>()*?[]{}~#!\n\r"

/* First words the shell handles itself: keywords, and builtins that only make
 * sense inside a shell (no program of that name does the same thing). */
static const char *const shell_words[] = {
        "if",       "then",    "else",    "elif",     "fi",    "case",  "esac",   "for",
        "while",    "until",   "do",      "done",     "in",    "{",     "}",      "!",
        ".",        ":",       "break",   "continue", "eval",  "exec",  "exit",   "export",
        "readonly", "return",  "set",     "shift",    "times", "trap",  "unset",  "cd",
        "alias",    "unalias", "command", "getopts",  "hash",  "jobs",  "read",   "type",
        "ulimit",   "umask",   "wait",    "fg",       "bg",    "local", "source", "function",
};

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * Copy the word at *P into *OUT (NUL-terminated) and advance both.
 * False when the word needs a shell.
 */
static bool take_word(const char **p, char **out, bool first)
{
	const char *s = *p;
	char *o = *out;

	while (*s && !is_blank(*s)) {
		if (*s == '\'' || *s == '"') {
			char q = *s++;
			const char *end = strchr(s, q);

			if (!end)
				return false;
			if (q == '"' && strcspn(s, "$`\\") < (size_t)(end - s))
				return false;
			memcpy(o, s, (size_t)(end - s));
			o += end - s;
			s = end + 1;
			continue;
		}
		/* VAR=value as the first word is an assignment for the shell. */
		if (strchr(SHELL_CHARS, *s) || (first && *s == '='))
			return false;
		*o++ = *s++;
	}
	*o++ = '\0';
	*p = s;
	*out = o;
	return true;
}

static bool shell_word(const char *w)
{
	if (!*w)
		return true;
	for (size_t i = 0; i < sizeof(shell_words) / sizeof(shell_words[0]); i++)
		if (!strcmp(w, shell_words[i]))
			return true;
	return false;
}

int cmd_split(const char *cmd, char ***argv)
{
	size_t len = strlen(cmd), max = len / 2 + 2, n = 0;
	char **v, *text;
	const char *p = cmd;

	*argv = NULL;
	/* One block: MAX pointers, then the words (never longer than CMD). */
	v = malloc(max * sizeof(char *) + len + 1);
	if (!v)
		return -ENOMEM;
	text = (char *)(v + max);
	for (;;) {
		while (is_blank(*p))
			p++;
		if (!*p)
			break;
		v[n] = text;
		if (!take_word(&p, &text, n == 0))
			goto shell;
		n++;
	}
	if (n == 0 || shell_word(v[0]))
		goto shell;
	v[n] = NULL;
	*argv = v;
	return (int)n;
shell:
	free(v);
	return 0;
}
