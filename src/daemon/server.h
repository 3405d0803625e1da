/*
 * server.h - HTTP/1.1 over the daemon's UNIX socket.
 *
 * The daemon binds the socket itself (mode 0666: any local user may talk to it;
 * who they are comes from SO_PEERCRED on each connection, never from the
 * request) and hands it to libmicrohttpd, one thread per connection since a
 * dump can take minutes.
 */
#ifndef STASIS_SERVER_H
#define STASIS_SERVER_H

/* Bind PATH (replacing a stale socket, refusing a live one) and start serving. */
int server_start(const char *path);
void server_stop(void);

/*
 * The connection of the request this thread is handling (-1: none). Long
 * operations watch it: the client hanging up (Ctrl-C) cancels them.
 */
int server_client_fd(void);
/* Watch FD as this thread's client (a worker thread acting for a request). */
void server_set_client_fd(int fd);

#endif
