/*
 * client.c - talks HTTP/1.1 to stasisd over its UNIX socket (libcurl) and
 * holds the small helpers every subcommand uses.
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

const char *cli_socket = DEFAULT_SOCKET;

void die_msg(const char *fmt, ...)
{
	va_list ap;

	fputs("stasis: error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static size_t on_body(char *data, size_t sz, size_t n, void *p)
{
	struct reply *r = p;
	char *nb = realloc(r->body, r->len + sz * n + 1);

	if (!nb)
		return 0;
	r->body = nb;
	memcpy(r->body + r->len, data, sz * n);
	r->len += sz * n;
	r->body[r->len] = '\0';
	return sz * n;
}

static void header_value(const char *line, size_t len, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);

	if (len > nl + 1 && !strncasecmp(line, name, nl) && line[nl] == ':') {
		const char *v = line + nl + 1;
		size_t vl = len - nl - 1;

		while (vl && (*v == ' '))
			v++, vl--;
		while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
			vl--;
		snprintf(out, outlen, "%.*s", (int)vl, v);
	}
}

static size_t on_header(char *data, size_t sz, size_t n, void *p)
{
	struct reply *r = p;

	header_value(data, sz * n, "X-Stasis-Log-Offset", r->offset, sizeof(r->offset));
	header_value(data, sz * n, "X-Stasis-Log-Size", r->size, sizeof(r->size));
	header_value(data, sz * n, "X-Stasis-Job-Running", r->running, sizeof(r->running));
	return sz * n;
}

static int call(const char *method, const char *path, json_t *body, struct reply *r)
{
	char url[4096], errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdrs = NULL;
	char *text = NULL;
	CURL *c;
	CURLcode rc;

	memset(r, 0, sizeof(*r));
	c = curl_easy_init();
	if (!c) {
		snprintf(r->error, sizeof(r->error), "cannot initialise libcurl");
		return -1;
	}
	snprintf(url, sizeof(url), "http://localhost%s", path);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, cli_socket);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	hdrs = curl_slist_append(hdrs, "Expect:");
	if (body) {
		text = json_dumps(body, JSON_COMPACT);
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	rc = curl_easy_perform(c);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	else
		snprintf(r->error, sizeof(r->error), "%s",
		         errbuf[0] ? errbuf : curl_easy_strerror(rc));
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	free(text);
	if (r->body && r->len && r->body[0] == '{')
		r->json = json_loadb(r->body, r->len, 0, NULL);
	return r->status >= 200 && r->status < 300 ? 0 : -1;
}

int api_quiet(const char *method, const char *path, json_t *body, struct reply *r)
{
	return call(method, path, body, r);
}

void report_error(const struct reply *r)
{
	const char *msg;

	if (r->status == 0 && access(cli_socket, F_OK))
		die_msg("cannot reach stasisd: no socket at %s (is it running? try `stasis daemon "
		        "start`, or set --socket / STASIS_SOCKET)",
		        cli_socket);
	else if (r->status == 0)
		die_msg("cannot reach stasisd at %s: %s (is it running? try `stasis daemon "
		        "start`)",
		        cli_socket,
		        strstr(r->error, "Couldn't connect") ? "nothing answers" : r->error);
	else if ((msg = json_string_value(json_object_get(r->json, "error"))))
		die_msg("%s", msg);
	else
		die_msg("stasisd answered HTTP %ld", r->status);
}

int api(const char *method, const char *path, json_t *body, struct reply *r)
{
	if (!call(method, path, body, r))
		return 0;
	report_error(r);
	return -1;
}

void reply_free(struct reply *r)
{
	json_decref(r->json);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

bool daemon_alive(void)
{
	struct reply r;
	int ret = api_quiet("GET", "/v1/version", NULL, &r);

	reply_free(&r);
	return ret == 0;
}

char *url_escape(const char *s)
{
	char *e = curl_easy_escape(NULL, s, 0), *out = strdup(e ? e : "");

	curl_free(e);
	return out;
}

void job_path(char *buf, size_t len, const char *id, const char *suffix)
{
	char *esc = url_escape(id);

	snprintf(buf, len, "/v1/jobs/%s%s", esc, suffix);
	free(esc);
}

void print_json(json_t *j)
{
	json_dumpf(j, stdout, JSON_INDENT(2));
	putchar('\n');
}

/*
 * The line users' scripts already parse: stats as the tools they come from
 * print them. What stasis adds (the dump's "Tree", a restore's "Fill") is in
 * --json only.
 */
void print_success(const char *head, json_t *j)
{
	static const char *const extra[] = {"Tree", "Fill", "FillDuration"};
	json_t *st = json_deep_copy(json_object_get(j, "stats"));
	char *stats;

	for (size_t i = 0; st && i < sizeof(extra) / sizeof(extra[0]); i++)
		json_object_del(st, extra[i]);
	stats = st ? json_dumps(st, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	printf("Success %s stats=%s\n", head, stats ? stats : "{}");
	free(stats);
	json_decref(st);
}

int parse_stream_arg(const char *arg, json_t *req)
{
	char *end;
	long n = strtol(arg, &end, 10);

	if (*end || n < 1 || n > 64) {
		die_msg("--stream wants a shard count from 1 to 64, got '%s'", arg);
		return -1;
	}
	json_object_set_new(req, "stream", json_integer(n));
	return 0;
}

int parse_timeout_arg(const char *arg, json_t *req)
{
	char *end;
	long n = strtol(arg, &end, 10);

	if (!*arg || *end || n < 0 || n > 86400) {
		die_msg("--timeout wants seconds from 0 (no bound) to 86400, got '%s'", arg);
		return -1;
	}
	json_object_set_new(req, "timeout", json_integer(n));
	return 0;
}

char *abs_path(const char *path)
{
	char cwd[PATH_MAX], *out;

	if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return strdup(path);
	if (asprintf(&out, "%s/%s", cwd, path) < 0)
		return NULL;
	return out;
}

const char *self_dir(void)
{
	static char dir[PATH_MAX];
	ssize_t n;
	char *slash;

	if (dir[0])
		return dir;
	n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
	dir[n > 0 ? n : 0] = '\0';
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	return dir;
}

const char *human_bytes(double n, char *buf, size_t len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int u = 0;

	while (n >= 1024 && u < 4) {
		n /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", n, units[u]);
	return buf;
}
