/* Game-side load against a phonepatch game gateway, in C so that the load generator costs far
 * less CPU than the gateway it measures. One thread, non-blocking sockets, epoll.
 *
 *   wsload churn PORT PATH CLIENTS SECONDS
 *
 * CLIENTS connections at a time, each in a loop: TCP connect, websocket upgrade on PATH, read
 * text frames until two have arrived (the game protocol's number and code), send a close frame
 * (1000), read until the server's close frame and its end of stream, close, start again. After
 * SECONDS no new cycle starts; those under way get two seconds to end. Prints one JSON line:
 * cycles, refused (closed before both texts), errors, elapsed seconds, and the p50/p99 of a
 * cycle's duration in milliseconds.
 *
 *   wsload games PORT PATH GAMES
 *
 * GAMES connections that stay: prints each game's code on a line, then "ready"; prints "patched"
 * once every game has received "connected"; then, for every v0 transcript whose text is a
 * CLOCK_MONOTONIC stamp in nanoseconds, records now - stamp. When standard input ends, prints
 * one JSON line: delivered, p50/p90/p99/p99.9/max latency in milliseconds, errors, and its CPU seconds.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum state { HANDSHAKE, FRAMES, CLOSING };

struct conn {
    int fd;
    enum state state;
    int sent_request;
    int texts;
    int close_sent;
    int refused;
    double started;
    double last_progress;
    char code[32];
    size_t used;
    unsigned char buf[16384];
};

/* What a mode does with each text frame; returns -1 to fail the connection. */
typedef int (*text_handler)(struct conn *c, const unsigned char *text, size_t len);

static int port;
static char request[512];
static size_t request_len;
static int epfd;
static int stopping;
static long cycles, refused, errors;

struct samples {
    double *values;
    size_t len, cap;
};
static struct samples samples;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void record(double value) {
    if (samples.len == samples.cap) {
        samples.cap = samples.cap ? samples.cap * 2 : 65536;
        samples.values = realloc(samples.values, samples.cap * sizeof *samples.values);
        if (!samples.values) { perror("realloc"); exit(1); }
    }
    samples.values[samples.len++] = value;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile(double q) {
    if (!samples.len) return 0;
    size_t at = (size_t)(samples.len * q);
    return samples.values[at < samples.len ? at : samples.len - 1];
}

static int send_all(int fd, const void *data, size_t len) {
    /* Requests and close frames are tiny: a loopback socket's buffer always takes them whole. */
    return send(fd, data, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

static int send_close(struct conn *c) {
    static const unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    unsigned char frame[8] = {0x88, 0x82, mask[0], mask[1], mask[2], mask[3], 0x03 ^ mask[0], 0xe8 ^ mask[1]};
    c->close_sent = 1;
    return send_all(c->fd, frame, sizeof frame);
}

static int open_socket(struct conn *c, int flags) {
    memset(c, 0, offsetof(struct conn, buf));
    c->fd = socket(AF_INET, SOCK_STREAM | flags, 0);
    if (c->fd < 0) { perror("socket"); return -1; }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->started = c->last_progress = now();
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    return 0;
}

/* Take the HTTP response off the buffer once whole: 1 done, 0 not yet, -1 not an upgrade. */
static int handshake(struct conn *c) {
    unsigned char *end = memmem(c->buf, c->used, "\r\n\r\n", 4);
    if (!end) return c->used == sizeof c->buf ? -1 : 0;
    if (c->used < 12 || memcmp(c->buf + 9, "101", 3) != 0) return -1;
    size_t head = end + 4 - c->buf;
    memmove(c->buf, c->buf + head, c->used - head);
    c->used -= head;
    c->state = FRAMES;
    return 1;
}

/* Parse whole frames out of the buffer: texts go to ``on_text``; a close frame is answered. */
static int frames(struct conn *c, text_handler on_text) {
    size_t at = 0;
    while (c->used - at >= 2) {
        unsigned char *f = c->buf + at;
        int opcode = f[0] & 0x0f;
        uint64_t len = f[1] & 0x7f;
        size_t head = 2;
        if (f[1] & 0x80) return -1; /* servers never mask */
        if (len == 126) {
            if (c->used - at < 4) break;
            len = (uint64_t)f[2] << 8 | f[3];
            head = 4;
        } else if (len == 127) {
            if (c->used - at < 10) break;
            len = 0;
            for (int i = 0; i < 8; i++) len = len << 8 | f[2 + i];
            head = 10;
        }
        if (len > sizeof c->buf - 16) return -1;
        if (c->used - at < head + len) break;
        at += head + len;
        if (opcode == 0x1) {
            c->texts++;
            if (on_text(c, f + head, len) < 0) return -1;
        } else if (opcode == 0x8) {
            if (c->texts < 2) c->refused = 1;
            if (!c->close_sent && send_close(c) < 0) return -1;
            c->state = CLOSING;
        }
    }
    memmove(c->buf, c->buf + at, c->used - at);
    c->used -= at;
    return 0;
}

/* ---- churn ------------------------------------------------------------------------------- */

static int churn_text(struct conn *c, const unsigned char *text, size_t len) {
    (void)text, (void)len;
    if (c->texts == 2 && !c->close_sent) {
        c->state = CLOSING;
        return send_close(c);
    }
    return 0;
}

static int churn_start(struct conn *c) {
    if (open_socket(c, SOCK_NONBLOCK) < 0) return -1;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static void churn_finish(struct conn *c, int failed) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (failed) {
        errors++;
    } else if (c->refused) {
        refused++;
    } else {
        cycles++;
        record(now() - c->started);
    }
    c->fd = -1;
    if (!stopping && churn_start(c) < 0) {
        errors++;
        c->fd = -1;
    }
}

static void churn_event(struct conn *c, uint32_t events) {
    if (c->state == HANDSHAKE && !c->sent_request) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        int error = 0;
        socklen_t len = sizeof error;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &len);
        if (error || send_all(c->fd, request, request_len) < 0) { churn_finish(c, 1); return; }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->sent_request = 1;
        return;
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->used, sizeof c->buf - c->used, 0);
        if (n == 0) { /* the server closed: after its close frame, that ends the cycle */
            churn_finish(c, c->state != CLOSING);
            return;
        }
        if (n < 0) {
            if (errno != EAGAIN) churn_finish(c, 1);
            return;
        }
        c->used += n;
        c->last_progress = now();
        int done = c->state == HANDSHAKE ? handshake(c) : 1;
        if (done < 0 || (done && frames(c, churn_text) < 0)) { churn_finish(c, 1); return; }
    }
}

static int churn(int clients, double seconds) {
    struct conn *conns = calloc(clients, sizeof *conns);
    double began = now();
    for (int i = 0; i < clients; i++)
        if (churn_start(&conns[i]) < 0) { errors++; conns[i].fd = -1; }
    struct epoll_event events[256];
    double stop_at = began + seconds, give_up = stop_at + 2.0;
    for (;;) {
        double t = now();
        if (!stopping && t >= stop_at) stopping = 1;
        int open = 0;
        for (int i = 0; i < clients; i++) {
            if (conns[i].fd < 0) continue;
            if (t - conns[i].last_progress > 5.0) { churn_finish(&conns[i], 1); continue; }
            open++;
        }
        if (stopping && (!open || t >= give_up)) break;
        int n = epoll_wait(epfd, events, 256, 50);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c->fd >= 0) churn_event(c, events[i].events);
        }
    }
    double elapsed = now() - began;
    qsort(samples.values, samples.len, sizeof *samples.values, compare);
    printf("{\"cycles\": %ld, \"refused\": %ld, \"errors\": %ld, \"elapsed_s\": %.3f, \"cycle_p50_ms\": %.3f, \"cycle_p99_ms\": %.3f}\n",
           cycles, refused, errors, elapsed, quantile(0.5) * 1e3, quantile(0.99) * 1e3);
    return 0;
}

/* ---- games ------------------------------------------------------------------------------- */

static int games_patched;

static int games_text(struct conn *c, const unsigned char *text, size_t len) {
    if (c->texts == 1) return 0; /* the phone number */
    if (c->texts == 2) {         /* the code, as a bare string */
        if (len >= sizeof c->code) return -1;
        memcpy(c->code, text, len);
        c->code[len] = 0;
        return 0;
    }
    if (len == 9 && memcmp(text, "connected", 9) == 0) {
        games_patched++;
        return 0;
    }
    static const char key[] = "\"transcript\":\"";
    const unsigned char *at = memmem(text, len, key, sizeof key - 1);
    if (!at) return 0;
    at += sizeof key - 1;
    uint64_t stamp = 0;
    while (at < text + len && *at >= '0' && *at <= '9') stamp = stamp * 10 + (*at++ - '0');
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t t = (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
    record((double)(t - stamp) / 1e6);
    return 0;
}

/* Read what is there (or wait for it when blocking); -1 when the connection is gone. */
static int games_read(struct conn *c) {
    ssize_t n = recv(c->fd, c->buf + c->used, sizeof c->buf - c->used, 0);
    if (n == 0) return -1;
    if (n < 0) return errno == EAGAIN ? 0 : -1;
    c->used += n;
    int done = c->state == HANDSHAKE ? handshake(c) : 1;
    if (done < 0 || (done && frames(c, games_text) < 0)) return -1;
    return 1;
}

static int games(int count) {
    struct conn *conns = calloc(count, sizeof *conns);
    for (int i = 0; i < count; i++) { /* one by one, blocking, until each has its code */
        struct conn *c = &conns[i];
        if (open_socket(c, 0) < 0 || send_all(c->fd, request, request_len) < 0) { perror("connect"); return 1; }
        while (c->texts < 2)
            if (games_read(c) < 0) { fprintf(stderr, "game %d: closed before its code\n", i); return 1; }
        printf("%s\n", c->code);
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    }
    printf("ready\n");
    fflush(stdout);
    struct epoll_event events[256];
    int told = 0;
    struct pollfd input = {.fd = 0, .events = POLLIN};
    for (;;) {
        int n = epoll_wait(epfd, events, 256, 20);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c->fd < 0) continue;
            int got;
            while ((got = games_read(c)) > 0) {}
            if (got < 0) {
                errors++;
                epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
            }
        }
        if (!told && games_patched == count) {
            printf("patched\n");
            fflush(stdout);
            told = 1;
        }
        if (poll(&input, 1, 0) > 0) { /* standard input ended (or spoke): the run is over */
            char sink[256];
            if (read(0, sink, sizeof sink) <= 0) break;
        }
    }
    qsort(samples.values, samples.len, sizeof *samples.values, compare);
    struct timespec cpu;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
    printf("{\"delivered\": %zu, \"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, \"p999_ms\": %.3f, \"max_ms\": %.3f, "
           "\"errors\": %ld, \"cpu_s\": %.3f}\n",
           samples.len, quantile(0.5), quantile(0.9), quantile(0.99), quantile(0.999), quantile(1.0), errors,
           cpu.tv_sec + cpu.tv_nsec / 1e9);
    return 0;
}

int main(int argc, char **argv) {
    int is_churn = argc == 6 && strcmp(argv[1], "churn") == 0;
    int is_games = argc == 5 && strcmp(argv[1], "games") == 0;
    if (!is_churn && !is_games) {
        fprintf(stderr, "usage: %s churn PORT PATH CLIENTS SECONDS | games PORT PATH GAMES\n", argv[0]);
        return 2;
    }
    port = atoi(argv[2]);
    request_len = snprintf(request, sizeof request,
        "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", argv[3], port);
    epfd = epoll_create1(0);
    return is_churn ? churn(atoi(argv[4]), atof(argv[5])) : games(atoi(argv[4]));
}
