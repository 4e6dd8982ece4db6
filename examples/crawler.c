/* SPDX-License-Identifier: MIT */
/*
 * crawler.c - a web-crawler-style fetcher with a limit on concurrency.
 * The program starts its own small site on 127.0.0.1 (a free port): each
 * request "GET /page/N\n" is answered, after 20 ms, with "200 OK\n" and
 * the page's links, one per line, and the connection is closed. The
 * server counts the requests it is serving at once and keeps the maximum.
 *
 * The crawler starts from /page/0 and spawns a task for every URL it has
 * not seen yet (a set of the URLs seen), all in one task group, which
 * the tasks themselves add to. A semaphore of 5 permits keeps at most 5
 * requests in flight: a task takes a permit before it connects and gives
 * it back once the page is read, then follows the links. The line printed
 * at the end reports the maximum the server saw, so a broken limit shows.
 *
 * Usage: crawler
 */
#include <coil.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define N_PAGES 40      /* the site: /page/0 .. /page/39 */
#define MAX_IN_FLIGHT 5 /* the crawler's limit */
#define SERVICE_TIME (20 * COIL_MSEC)
#define URL_MAX 32

/* ---------------------------------------------------------------- */
/* The site                                                           */
/* ---------------------------------------------------------------- */

struct site {
    int in_flight; /* requests being served now */
    int max_in_flight;
    int served;
};

/* The body of page n: its children 3n+1..3n+3 (those that exist), and
 * links to page n/2 and to the home page, which the crawler has already
 * seen: its set of URLs must filter them out. */
static int page_body(int n, char *buf, size_t cap)
{
    int len = snprintf(buf, cap, "200 OK\n");
    for (int c = 3 * n + 1; c <= 3 * n + 3 && c < N_PAGES; c++)
        len += snprintf(buf + len, cap - (size_t)len, "/page/%d\n", c);
    len += snprintf(buf + len, cap - (size_t)len, "/page/%d\n/page/0\n", n / 2);
    return len;
}

/* One connection: one request line, one answer, then the stream closes
 * (when the handler returns). */
static int serve_page(coil_stream_t *s, void *arg)
{
    struct site *site = arg;
    char line[64], reply[256];
    size_t len;
    int err = coil_stream_readline(s, line, sizeof(line) - 1, &len);
    if (err || len == 0)
        return err;
    line[len] = '\0';

    if (++site->in_flight > site->max_in_flight)
        site->max_in_flight = site->in_flight;
    err = coil_sleep(SERVICE_TIME); /* as if it asked a database */
    int n = -1, rlen;
    if (sscanf(line, "GET /page/%d", &n) == 1 && n >= 0 && n < N_PAGES)
        rlen = page_body(n, reply, sizeof(reply));
    else
        rlen = snprintf(reply, sizeof(reply), "404 Not Found\n");
    if (!err)
        err = coil_stream_write(s, reply, (size_t)rlen);
    site->in_flight--;
    site->served++;
    return err;
}

/* ---------------------------------------------------------------- */
/* The crawler                                                        */
/* ---------------------------------------------------------------- */

struct crawler;

struct page {
    struct crawler *c;
    char url[URL_MAX];
};

struct crawler {
    char port[16];
    coil_group_t *group;       /* every fetch task */
    coil_semaphore_t *sem;     /* the permits to be in flight */
    struct page seen[N_PAGES]; /* the set of URLs seen (small: a list) */
    int n_seen;
    int fetched;
};

/* Fetch url into body (NUL-terminated), checking the status line. */
static int fetch(const char *port, const char *url, char *body, size_t cap)
{
    coil_stream_t *s;
    int err = coil_stream_open("127.0.0.1", port, &s);
    if (err)
        return err;
    char req[64];
    int n = snprintf(req, sizeof(req), "GET %s\n", url);
    size_t len = 0;
    err = coil_stream_write(s, req, (size_t)n);
    if (!err) /* the server closes the connection after the page */
        err = coil_stream_read_all(s, body, cap - 1, &len);
    coil_stream_unref(s); /* the last reference: closes the stream */
    body[err ? 0 : len] = '\0';
    if (!err && strncmp(body, "200 OK\n", 7) != 0)
        err = -EPROTO;
    return err;
}

static int crawl_page(void *arg);

/* Crawl url unless it was seen: add it to the set, spawn its task. */
static int visit(struct crawler *c, const char *url)
{
    for (int i = 0; i < c->n_seen; i++)
        if (strcmp(c->seen[i].url, url) == 0)
            return 0;
    if (c->n_seen == N_PAGES || strlen(url) >= URL_MAX)
        return -EPROTO; /* not a page of the site */
    struct page *pg = &c->seen[c->n_seen++];
    pg->c = c;
    strcpy(pg->url, url);
    return coil_group_spawn(c->group, crawl_page, pg, NULL, NULL);
}

/* A task per page: fetch it (holding a permit), then visit its links. */
static int crawl_page(void *arg)
{
    struct page *pg = arg;
    struct crawler *c = pg->c;
    char body[512];
    int err = coil_semaphore_acquire(c->sem); /* waits for a permit */
    if (err)
        return err;
    err = fetch(c->port, pg->url, body, sizeof(body));
    coil_semaphore_release(c->sem);
    if (err) {
        if (err != -ECANCELED) /* the first failure cancels the others */
            fprintf(stderr, "crawler: %s: %s\n", pg->url, coil_strerror(err));
        return err;
    }
    c->fetched++;
    /* The links: every line after the status line. */
    for (char *line = strchr(body, '\n') + 1; *line && !err;) {
        char *end = strchr(line, '\n');
        if (!end)
            return -EPROTO;
        *end = '\0';
        err = visit(c, line);
        line = end + 1;
    }
    return err;
}

static int main_task(void *arg)
{
    (void)arg;
    struct site site = {0};
    struct crawler c = {0};
    coil_server_t *srv;
    int err = coil_server_open("127.0.0.1", "0", serve_page, &site, NULL, &srv);
    if (err) {
        fprintf(stderr, "crawler: server: %s\n", coil_strerror(err));
        return err;
    }
    snprintf(c.port, sizeof(c.port), "%d", coil_server_port(srv));
    printf("crawling a local site from /page/0, %d requests at a time\n",
           MAX_IN_FLIGHT);

    err = coil_semaphore_new(coil_running_loop(), MAX_IN_FLIGHT, &c.sem);
    if (!err) {
        err = coil_group_new(&c.group);
        if (!err) {
            err = visit(&c, "/page/0");
            /* Waits for every task, and for those they spawned. */
            int gerr = coil_group_wait(c.group);
            coil_group_unref(c.group);
            if (!err)
                err = gerr;
        }
        coil_semaphore_unref(c.sem);
    }

    coil_server_close(srv);
    coil_server_close_clients(srv); /* none left, unless on an error */
    coil_server_wait_closed(srv);   /* every connection task has finished */
    coil_server_unref(srv);
    if (err) {
        fprintf(stderr, "crawler: %s\n", coil_strerror(err));
        return err;
    }
    printf("fetched %d pages, at most %d in flight\n", c.fetched,
           site.max_in_flight);
    if (c.fetched != N_PAGES || site.served != N_PAGES ||
        site.max_in_flight > MAX_IN_FLIGHT) {
        fprintf(stderr, "crawler: expected %d pages, at most %d at once\n",
                N_PAGES, MAX_IN_FLIGHT);
        return -EPROTO;
    }
    return 0;
}

int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: crawler\n");
        return 2;
    }
    return coil_run(main_task, NULL) < 0;
}
