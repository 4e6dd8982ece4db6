/* SPDX-License-Identifier: MIT */
/*
 * server.c - servers (coil/server.h): listening sockets, one accept task
 * each, one task per connection.
 *
 * The server is reference counted: one for the users' holds while there
 * are any (user_refs, coil_server_ref/unref; the last closes the server),
 * one per accept task and one per connection task.
 * Tasks release theirs from a done callback on their future rather than
 * at the end of their function, because a task cancelled before its
 * first step never runs its function at all (coil_server_close and
 * close_clients may cancel tasks that were only just spawned).
 *
 * Accept errors that mean "out of resources" (EMFILE, ENFILE, ENOBUFS,
 * ENOMEM) leave the connection queued and the listener readable; the
 * accept task then sleeps (100 ms, doubling to 1 s) before trying again,
 * instead of spinning on a readable fd it cannot serve. Any other error
 * (one the listening socket should never give) is reported through the
 * loop's exception handler and met the same way: a server never stops
 * accepting on its own, as asyncio's keeps its reader after reporting.
 * Errors of single connections never get here (coil_sock_accept skips
 * them).
 *
 * The server holds a reference on its loop and is a close hook of it:
 * closing the loop closes the listening sockets and lets go of what the
 * (abandoned) tasks held, whose done callbacks will never run.
 */
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "coil/server.h"
#include "coil/stream.h"
#include "loop_internal.h"
#include "net_internal.h"
#include "server_internal.h"

#define DEFAULT_BACKLOG 100
#define BACKOFF_MIN (100 * COIL_MSEC)
#define BACKOFF_MAX (1 * COIL_SEC)

struct listener {
    struct coil_server *srv;
    int fd;                   /* -1 once closed */
    struct coil__watch watch; /* of fd */
    coil_task_t *task;        /* its accept task, NULL once finished */
};

struct conn {
    struct coil__list link; /* in srv->conns */
    struct coil_server *srv;
    coil_stream_t *stream;
    coil_task_t *task;
};

struct coil_server {
    unsigned refs;
    unsigned user_refs;        /* coil_server_ref / coil_server_unref */
    coil_loop_t *loop;         /* referenced */
    struct coil__close_hook hook; /* linked while the loop may close */
    bool hooked;
    coil_conn_handler_fn handler;
    void *arg;
    void (*arg_free)(void *arg); /* the server owns arg (a wrapper's) */
    struct listener *ls;
    size_t nls;
    bool is_unix;
    bool closed;
    /* Unix servers: the socket file to remove at close (if it is still
     * the one bound: same device and inode), or path[0] == 0. */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    dev_t path_dev;
    ino_t path_ino;
    struct coil__list conns;
    size_t nconns;
    size_t naccepting;         /* accept tasks whose done callback is due */
    coil_future_t *closed_fut; /* serve_forever: done at close */
    coil_future_t *idle_fut;   /* wait_closed: closed and no connection */
};

static void server_unref(struct coil_server *srv)
{
    if (--srv->refs > 0)
        return;
    struct coil_loop *loop = srv->loop;
    if (srv->hooked)
        coil__loop_on_close_cancel(&srv->hook);
    coil_future_unref(srv->closed_fut);
    coil_future_unref(srv->idle_fut);
    if (srv->arg_free)
        srv->arg_free(srv->arg);
    coil__free(srv->ls);
    coil__free(srv);
    coil__loop_unref(loop);
}

void coil__server_set_arg_free(coil_server_t *srv, void (*fn)(void *arg))
{
    srv->arg_free = fn;
}

static void check_idle(struct coil_server *srv)
{
    if (srv->closed && srv->nconns == 0 && srv->naccepting == 0)
        coil__future_settle(&srv->idle_fut);
}

/* ------------------------------------------------------------------ */
/* Connections                                                          */
/* ------------------------------------------------------------------ */

static int conn_main(void *arg)
{
    struct conn *c = arg;
    return c->srv->handler(c->stream, c->srv->arg);
}

static void conn_free(struct conn *c)
{
    struct coil_server *srv = c->srv;
    coil__list_remove(&c->link);
    srv->nconns--;
    coil_stream_unref(c->stream);
    coil_task_unref(c->task);
    coil__free(c);
    check_idle(srv);
    server_unref(srv);
}

static void conn_done(coil_future_t *fut, void *arg)
{
    /* The handler's result is ignored (server.h): read, so that debug
     * mode does not report it as an error nobody saw. */
    (void)coil_future_error(fut);
    conn_free(arg);
}

/* A connection was accepted: give it a task, or close it. */
static void start_conn(struct coil_server *srv, int fd)
{
    struct conn *c = coil__malloc(sizeof(*c));
    if (!c) {
        (void)coil_sock_close(fd);
        return;
    }
    memset(c, 0, sizeof(*c));
    c->srv = srv;
    if (coil_stream_open_fd(fd, &c->stream) != 0) {
        (void)coil_sock_close(fd);
        coil__free(c);
        return;
    }
    if (coil_task_spawn(srv->loop, conn_main, c, &c->task) != 0) {
        coil_stream_unref(c->stream);
        coil__free(c);
        return;
    }
    if (coil_future_add_done_callback(coil_task_future(c->task), conn_done,
                                      c) != 0) {
        /* Cancelled before its first step, it never runs conn_main. */
        (void)coil_task_cancel(c->task);
        coil_task_unref(c->task);
        coil_stream_unref(c->stream);
        coil__free(c);
        return;
    }
    coil__list_push_back(&srv->conns, &c->link);
    srv->nconns++;
    srv->refs++;
}

/* ------------------------------------------------------------------ */
/* Accepting                                                            */
/* ------------------------------------------------------------------ */

static bool out_of_resources(int err)
{
    return err == -EMFILE || err == -ENFILE || err == -ENOBUFS ||
           err == -ENOMEM;
}

static int accept_main(void *arg)
{
    struct listener *l = arg;
    struct coil_server *srv = l->srv;
    int64_t backoff = 0;
    while (!srv->closed) {
        int fd = coil__sock_accept(&l->watch, l->fd, NULL, NULL);
        if (fd >= 0) {
            backoff = 0;
            start_conn(srv, fd);
            continue;
        }
        if (fd == -ECANCELED) {
            /* The close's own cancellation ends here (withdrawn, not
             * swallowed); one from outside as well (coil_run's end) goes
             * on as the task's outcome. */
            coil_task_t *me = coil_current_task();
            if (srv->closed && coil_task_uncancel(me) == 0)
                return 0;
            return -ECANCELED;
        }
        if (srv->closed)
            return 0; /* closed under us (-EBADF) */
        if (!out_of_resources(fd))
            coil__loop_report(srv->loop, fd,
                              "server: accept on fd %d failed; accepting "
                              "again after a pause",
                              l->fd);
        backoff = backoff ? backoff * 2 : BACKOFF_MIN;
        if (backoff > BACKOFF_MAX)
            backoff = BACKOFF_MAX;
        int err = coil_sleep(backoff);
        if (err)
            return err;
    }
    return 0;
}

static void accept_done(coil_future_t *fut, void *arg)
{
    (void)fut;
    struct listener *l = arg;
    struct coil_server *srv = l->srv;
    coil_task_unref(l->task);
    l->task = NULL;
    srv->naccepting--;
    check_idle(srv);
    server_unref(srv);
}

/* ------------------------------------------------------------------ */
/* Starting                                                             */
/* ------------------------------------------------------------------ */

static void on_loop_close(struct coil__close_hook *hook);

static int server_new(coil_conn_handler_fn handler, void *arg, size_t n,
                      struct coil_server **out)
{
    coil_loop_t *loop;
    if (!(loop = coil_running_loop()))
        return -EPERM;
    struct coil_server *srv = coil__malloc(sizeof(*srv));
    if (!srv)
        return -ENOMEM;
    memset(srv, 0, sizeof(*srv));
    srv->ls = coil__malloc(n * sizeof(*srv->ls));
    if (!srv->ls) {
        coil__free(srv);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        srv->ls[i] = (struct listener){.srv = srv, .fd = -1};
    srv->refs = 1;
    srv->user_refs = 1;
    srv->loop = loop;
    coil__loop_ref(loop);
    srv->hook.on_close = on_loop_close;
    coil__loop_on_close(loop, &srv->hook);
    srv->hooked = true;
    srv->handler = handler;
    srv->arg = arg;
    coil__list_init(&srv->conns);
    *out = srv;
    return 0;
}

/* Close every listening socket made so far. */
static void close_listeners(struct coil_server *srv)
{
    for (size_t i = 0; i < srv->nls; i++) {
        struct listener *l = &srv->ls[i];
        if (l->fd >= 0) {
            coil__watch_close(&l->watch);
            (void)close(l->fd); /* once, whatever it says */
            l->fd = -1;
        }
    }
}

static int listen_on(struct coil_server *srv, const struct sockaddr *addr,
                     socklen_t len, const coil_server_options_t *opts)
{
    int family = addr->sa_family;
    int fd = coil_sock_open(family, SOCK_STREAM, 0);
    if (fd < 0)
        return fd;
    struct listener *l = &srv->ls[srv->nls];
    int err = coil__watch_init(&l->watch, srv->loop, fd, COIL__WATCH_OWNED);
    if (err) {
        (void)coil_sock_close(fd);
        return err;
    }
    l->fd = fd;
    srv->nls++;
    int one = 1;
    if (family != AF_UNIX && !opts->no_reuse_address &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        return -errno;
    if (opts->reuse_port) {
#ifdef SO_REUSEPORT
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
            return -errno;
#else
        return -EOPNOTSUPP;
#endif
    }
#ifdef IPV6_V6ONLY
    if (family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
        return -errno;
#endif
    if (bind(fd, addr, len) < 0)
        return -errno;
    if (listen(fd, opts->backlog ? opts->backlog : DEFAULT_BACKLOG) < 0)
        return -errno;
    return 0;
}

/* Spawn the accept tasks; on failure the caller frees the server. */
static int start_accepting(struct coil_server *srv)
{
    for (size_t i = 0; i < srv->nls; i++) {
        struct listener *l = &srv->ls[i];
        int err = coil_task_spawn(srv->loop, accept_main, l, &l->task);
        if (err)
            return err;
        err = coil_future_add_done_callback(coil_task_future(l->task),
                                            accept_done, l);
        if (err) {
            (void)coil_task_cancel(l->task); /* never runs */
            coil_task_unref(l->task);
            l->task = NULL;
            return err;
        }
        srv->refs++;
        srv->naccepting++;
    }
    return 0;
}

static int check_opts(const coil_server_options_t *opts)
{
    return opts && opts->backlog < 0 ? -EINVAL : 0;
}

/* The listeners are set up (err 0) or not: start serving, or undo. */
static int finish_start(struct coil_server *srv, int err, coil_server_t **out)
{
    if (err) {
        close_listeners(srv);
        server_unref(srv);
        return err;
    }
    if ((err = start_accepting(srv))) {
        coil_server_unref(srv);
        return err;
    }
    *out = srv;
    return 0;
}

int coil_server_open(const char *host, const char *port,
                     coil_conn_handler_fn handler, void *arg,
                     const coil_server_options_t *opts, coil_server_t **out)
{
    if (out)
        *out = NULL;
    if (!handler || !out || check_opts(opts))
        return -EINVAL;
    if (!coil_current_task())
        return -EPERM;
    coil_server_options_t defaults = {0};
    if (!opts)
        opts = &defaults;
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    struct addrinfo *res;
    int err = coil_getaddrinfo(host, port ? port : "0", &hints, &res);
    if (err)
        return err;
    size_t n = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        n++;
    struct coil_server *srv;
    if ((err = server_new(handler, arg, n, &srv))) {
        coil_freeaddrinfo(res);
        return err;
    }
    /* A family this host cannot make sockets of is skipped (asyncio). */
    for (struct addrinfo *ai = res; ai && !err; ai = ai->ai_next) {
        err = listen_on(srv, ai->ai_addr, ai->ai_addrlen, opts);
        if (err == -EAFNOSUPPORT && srv->ls[srv->nls].fd < 0)
            err = 0;
    }
    if (!err && srv->nls == 0)
        err = -EAFNOSUPPORT;
    coil_freeaddrinfo(res);
    return finish_start(srv, err, out);
}

/*
 * A socket file left at path by a server that is gone (it crashed, or
 * kept its file) would make bind fail: remove it if nothing accepts
 * there, which a non-blocking connect tells at once (ECONNREFUSED).
 * Anything else at path (a live server, a file that is not a socket)
 * is left alone and bind reports -EADDRINUSE.
 */
static int clear_stale_socket(const char *path, const struct sockaddr_un *sun,
                              socklen_t len)
{
    struct stat st;
    if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return 0;
    int fd = coil_sock_open(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return fd;
    int r = connect(fd, (const struct sockaddr *)sun, len);
    int err = r < 0 ? errno : 0;
    (void)coil_sock_close(fd);
    if (err == ECONNREFUSED && unlink(path) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

int coil_server_open_unix(const char *path, coil_conn_handler_fn handler,
                          void *arg, const coil_server_options_t *opts,
                          coil_server_t **out)
{
    if (out)
        *out = NULL;
    if (!handler || !out || !path || !*path || check_opts(opts))
        return -EINVAL;
    struct sockaddr_un sun;
    size_t plen = strlen(path);
    if (plen >= sizeof(sun.sun_path))
        return -ENAMETOOLONG;
    if (!coil_current_task())
        return -EPERM;
    coil_server_options_t defaults = {0};
    if (!opts)
        opts = &defaults;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, plen + 1);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
                                plen + 1);
    int err = clear_stale_socket(path, &sun, len);
    if (err)
        return err;
    struct coil_server *srv;
    if ((err = server_new(handler, arg, 1, &srv)))
        return err;
    srv->is_unix = true;
    err = listen_on(srv, (struct sockaddr *)&sun, len, opts);
    struct stat st;
    if (!err && !opts->keep_socket_file && stat(path, &st) == 0) {
        memcpy(srv->path, path, plen + 1);
        srv->path_dev = st.st_dev;
        srv->path_ino = st.st_ino;
    }
    return finish_start(srv, err, out);
}

/* ------------------------------------------------------------------ */
/* Running and closing                                                  */
/* ------------------------------------------------------------------ */

/* The loop closes: the accept and connection tasks were abandoned (their
 * done callbacks never run), so what they held is let go here. */
static void on_loop_close(struct coil__close_hook *hook)
{
    struct coil_server *srv =
        coil__container_of(hook, struct coil_server, hook);
    srv->hooked = false;
    srv->refs++; /* what is let go may include the last reference */
    coil_server_close(srv);
    struct coil__list *l;
    while ((l = coil__list_first(&srv->conns)))
        conn_free(coil__container_of(l, struct conn, link));
    for (size_t i = 0; i < srv->nls; i++) {
        struct listener *li = &srv->ls[i];
        if (li->task)
            accept_done(NULL, li);
    }
    server_unref(srv);
}

/* Remove the Unix socket file, unless another has taken its place. */
static void remove_socket_file(struct coil_server *srv)
{
    struct stat st;
    if (srv->path[0] && lstat(srv->path, &st) == 0 &&
        st.st_dev == srv->path_dev && st.st_ino == srv->path_ino)
        (void)unlink(srv->path);
    srv->path[0] = 0;
}

int coil_server_close(coil_server_t *srv)
{
    if (!srv)
        return -EINVAL;
    if (srv->closed)
        return 0;
    srv->closed = true;
    for (size_t i = 0; i < srv->nls; i++) {
        struct listener *l = &srv->ls[i];
        if (l->task)
            (void)coil_task_cancel(l->task);
    }
    close_listeners(srv);
    remove_socket_file(srv);
    coil__future_settle(&srv->closed_fut);
    check_idle(srv);
    return 0;
}

int coil_server_close_clients(coil_server_t *srv)
{
    if (!srv)
        return -EINVAL;
    int n = 0;
    for (struct coil__list *l = srv->conns.next; l != &srv->conns;
         l = l->next) {
        struct conn *c = coil__container_of(l, struct conn, link);
        if (coil_task_cancel(c->task) == 0)
            n++;
    }
    return n;
}

/* Wait on *fp (made if needed) unless done() already holds. */
static int wait_on(struct coil_server *srv, coil_future_t **fp)
{
    int err = 0;
    srv->refs++;
    if (!*fp)
        err = coil_future_new(srv->loop, fp);
    if (!err) {
        coil_future_t *f = coil_future_ref(*fp);
        err = coil_shield(f, NULL);
        coil_future_unref(f);
    }
    server_unref(srv);
    return err;
}

int coil_server_wait_closed(coil_server_t *srv)
{
    if (!srv)
        return -EINVAL;
    if (!coil_current_task())
        return -EPERM;
    if (srv->closed && srv->nconns == 0 && srv->naccepting == 0)
        return 0;
    return wait_on(srv, &srv->idle_fut);
}

int coil_server_serve_forever(coil_server_t *srv)
{
    if (!srv)
        return -EINVAL;
    if (!coil_current_task())
        return -EPERM;
    if (srv->closed)
        return 0;
    srv->refs++;
    int err = wait_on(srv, &srv->closed_fut);
    if (err == -ECANCELED)
        coil_server_close(srv);
    server_unref(srv);
    return err;
}

bool coil_server_is_serving(const coil_server_t *srv)
{
    return srv && !srv->closed;
}

coil_loop_t *coil_server_loop(const coil_server_t *srv)
{
    return srv ? srv->loop : NULL;
}

int coil_server_port(const coil_server_t *srv)
{
    if (!srv || srv->is_unix || srv->nls == 0)
        return -EINVAL;
    if (srv->closed || srv->ls[0].fd < 0)
        return -EBADF;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(srv->ls[0].fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -EINVAL;
}

size_t coil_server_connections(const coil_server_t *srv)
{
    return srv ? srv->nconns : 0;
}

coil_server_t *coil_server_ref(coil_server_t *srv)
{
    if (!srv)
        return NULL;
    if (srv->user_refs == 0) {
        coil__loop_report(srv->loop, 0,
                          "coil_server_ref on a server whose last reference "
                          "was dropped");
        return NULL;
    }
    srv->user_refs++;
    return srv;
}

void coil_server_unref(coil_server_t *srv)
{
    if (!srv)
        return;
    if (srv->user_refs == 0) {
        coil__loop_report(srv->loop, 0,
                          "coil_server_unref on a server with no reference "
                          "left (unref'd once too often)");
        return;
    }
    if (--srv->user_refs > 0)
        return;
    coil_server_close(srv);
    server_unref(srv);
}
