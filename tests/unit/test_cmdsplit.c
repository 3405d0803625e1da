/* Unit tests for cmdsplit.c: which job commands run without a shell, and their words. */
#include "unit.h"
#include "cmdsplit.h"

#include <stdlib.h>
#include <string.h>

/* Split CMD and compare with the expected words (NULL-terminated), or expect the shell. */
static int split_is(const char *cmd, const char *const *want)
{
	char **v;
	int n = cmd_split(cmd, &v), ok = 1;

	if (!want)
		return n == 0 && v == NULL;
	for (int i = 0; i < n && ok; i++)
		ok = want[i] && !strcmp(v[i], want[i]);
	ok = ok && n > 0 && !want[n] && v[n] == NULL;
	free(v);
	return ok;
}

#define WORDS(...) ((const char *const[]){__VA_ARGS__, NULL})

TEST(plain_words)
{
	CHECK(split_is("python3 train.py", WORDS("python3", "train.py")));
	CHECK(split_is("  sleep\t100  ", WORDS("sleep", "100")));
	CHECK(split_is("/usr/bin/env -i x=1 prog", WORDS("/usr/bin/env", "-i", "x=1", "prog")));
	CHECK(split_is("python3 sample.py --start=tell me a story",
	               WORDS("python3", "sample.py", "--start=tell", "me", "a", "story")));
	CHECK(split_is("a,b:c@d%e+f^g", WORDS("a,b:c@d%e+f^g")));
}

TEST(quotes)
{
	CHECK(split_is("'python3' 'sample.py' '--start=tell me'",
	               WORDS("python3", "sample.py", "--start=tell me")));
	CHECK(split_is("echo \"a b\" 'c\"d' --x='$HOME'",
	               WORDS("echo", "a b", "c\"d", "--x=$HOME")));
	CHECK(split_is("printf ''", WORDS("printf", "")));
	CHECK(split_is("echo 'a;b|c'", WORDS("echo", "a;b|c")));
}

TEST(needs_shell)
{
	static const char *const shell[] = {
	        "",
	        "   ",
	        "a | b",
	        "a && b",
	        "a; b",
	        "echo $HOME",
	        "echo `id`",
	        "echo a\\ b",
	        "cat < f",
	        "echo > f",
	        "(a)",
	        "ls *.py",
	        "ls file?",
	        "ls [ab]",
	        "echo {a,b}",
	        "ls ~",
	        "echo a # comment",
	        "a\nb",
	        "FOO=bar prog",
	        "echo \"$HOME\"",
	        "echo \"unterminated",
	        "echo 'unterminated",
	        "exec python3 x.py",
	        "cd /tmp",
	        "if true",
	        "for x",
	        ". ./env.sh",
	        "export A=1",
	        "'' x",
	        "! prog",
	        "a & ",
	};

	for (size_t i = 0; i < sizeof(shell) / sizeof(shell[0]); i++) {
		if (!split_is(shell[i], NULL))
			fprintf(stderr, "  not sent to the shell: [%s]\n", shell[i]);
		CHECK(split_is(shell[i], NULL));
	}
}

int main(void)
{
	RUN(plain_words);
	RUN(quotes);
	RUN(needs_shell);
	return unit_report();
}
