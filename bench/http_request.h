/* SPDX-License-Identifier: MIT */
/*
 * http_request.h - what the HTTP benchmark's reference servers share: the
 * responses, byte for byte those of coil's examples/http_hello.c, and the
 * per-request work that decides between them.
 *
 * Fairness: a server measured against http_hello must not be cheaper by
 * doing less per request, so http_answer() makes the same checks as
 * http_hello's parse_request: the request line must end in "HTTP/1.x";
 * every header line is compared against Connection, Content-Length and
 * Transfer-Encoding; Connection values are split into tokens for "close"
 * and "keep-alive". The outcome is the same too: HTTP/1.1 keeps the
 * connection open unless "Connection: close", HTTP/1.0 only with
 * "Connection: keep-alive"; a request with a body gets 501, a malformed
 * one 400, a head over HTTP_MAX_HEAD bytes 431, each closing the
 * connection.
 */
#ifndef COIL_BENCH_HTTP_REQUEST_H
#define COIL_BENCH_HTTP_REQUEST_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HTTP_MAX_HEAD (8 * 1024) /* as http_hello's MAX_HEADER */

#define HTTP_OK_HEAD                                                           \
    "HTTP/1.1 200 OK\r\n"                                                      \
    "Content-Type: text/plain\r\n"                                             \
    "Content-Length: 13\r\n"
#define HTTP_CLOSE_LINE "Content-Length: 0\r\nConnection: close\r\n\r\n"

static const char http_ok_keep[] =
    HTTP_OK_HEAD "Connection: keep-alive\r\n\r\nHello, World!";
static const char http_ok_close[] =
    HTTP_OK_HEAD "Connection: close\r\n\r\nHello, World!";
static const char http_too_large[] =
    "HTTP/1.1 431 Request Header Fields Too Large\r\n" HTTP_CLOSE_LINE;
static const char http_not_impl[] =
    "HTTP/1.1 501 Not Implemented\r\n" HTTP_CLOSE_LINE;
static const char http_bad_req[] =
    "HTTP/1.1 400 Bad Request\r\n" HTTP_CLOSE_LINE;

/* The response to one request, and whether the connection ends after it. */
struct http_answer {
    const char *data;
    size_t len;
    bool close;
};

#define HTTP_ANSWER(resp, end)                                                 \
    ((struct http_answer){resp, sizeof(resp) - 1, end})

/* Whether the comma-separated list [p, end) has the token tok (any case,
 * blanks around items ignored). */
static inline bool http_list_has(const char *p, const char *end,
                                 const char *tok)
{
    size_t n = strlen(tok);
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *item = p;
        while (p < end && *p != ',')
            p++;
        const char *item_end = p;
        while (item_end > item && (item_end[-1] == ' ' || item_end[-1] == '\t'))
            item_end--;
        if ((size_t)(item_end - item) == n && strncasecmp(item, tok, n) == 0)
            return true;
    }
    return false;
}

/* If the header line [line, end) is named name (any case), the start of
 * its value (just after the colon); NULL if not. */
static inline const char *http_header(const char *line, const char *end,
                                      const char *name)
{
    size_t n = strlen(name);
    if ((size_t)(end - line) > n && line[n] == ':' &&
        strncasecmp(line, name, n) == 0)
        return line + n + 1;
    return NULL;
}

/* The answer to the request head head[0..len), which ends in "\r\n\r\n". */
static inline struct http_answer http_answer_head(const char *head, size_t len)
{
    const char *end = head + len;
    const char *eol = memchr(head, '\r', len);
    if (!eol || eol - head < 8 || memcmp(eol - 8, "HTTP/1.", 7) != 0)
        return HTTP_ANSWER(http_bad_req, true);
    bool http10 = eol[-1] == '0';
    bool says_close = false, says_keep = false, body = false;
    const char *line = eol + 2;
    while (line < end) {
        const char *le = memchr(line, '\r', (size_t)(end - line));
        if (!le || le == line)
            break; /* the blank line that ends the head */
        const char *v;
        if ((v = http_header(line, le, "Connection"))) {
            says_close |= http_list_has(v, le, "close");
            says_keep |= http_list_has(v, le, "keep-alive");
        } else if ((v = http_header(line, le, "Content-Length"))) {
            body |= strtol(v, NULL, 10) != 0;
        } else if (http_header(line, le, "Transfer-Encoding")) {
            body = true;
        }
        line = le + 2;
    }
    if (body)
        return HTTP_ANSWER(http_not_impl, true);
    if (says_close || (http10 && !says_keep))
        return HTTP_ANSWER(http_ok_close, true);
    return HTTP_ANSWER(http_ok_keep, false);
}

/*
 * Take the first request out of buf[0..len): if a whole head is there,
 * set *used to its length (up to and including "\r\n\r\n"), *a to the
 * answer, and return true. Return false if the head is not complete yet;
 * then, once len reaches HTTP_MAX_HEAD, the answer is 431 (and *used is
 * len).
 */
static inline bool http_next_request(const char *buf, size_t len, size_t *used,
                                     struct http_answer *a)
{
    const char *mark = memmem(buf, len, "\r\n\r\n", 4);
    if (!mark || mark + 4 - buf > HTTP_MAX_HEAD) {
        if (len < HTTP_MAX_HEAD)
            return false;
        *used = len;
        *a = HTTP_ANSWER(http_too_large, true);
        return true;
    }
    *used = (size_t)(mark + 4 - buf);
    *a = http_answer_head(buf, *used);
    return true;
}

#endif /* COIL_BENCH_HTTP_REQUEST_H */
