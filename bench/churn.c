/* Game connect/disconnect churn against a phonepatch game gateway, in C so that the load
 * generator costs far less CPU than the gateway it measures.
 *
 *   churn PORT PATH CLIENTS SECONDS
 *
 * CLIENTS connections at a time, each in a loop: TCP connect, websocket upgrade on PATH, read
 * text frames until two have arrived (the game protocol's number and code), send a close frame
 * (1000), read until the server's close frame and its end of stream, close, start again. One
 * thread, non-blocking sockets, epoll. After SECONDS no new cycle starts; those under way get
 * two seconds to end. Prints one JSON line: cycles, refused (closed before both texts), errors,
 * elapsed seconds, and the p50/p99 of a cycle's duration in milliseconds.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
    size_t used;
    unsigned char buf[8192];
};

static int port;
static const char *path;
static char request[512];
static size_t request_len;
static long cycles, refused, errors;
static double *durations;
static size_t durations_len, durations_cap;
static int epfd;
static int stopping;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void record(double seconds) {
    if (durations_len == durations_cap) {
        durations_cap = durations_cap ? durations_cap * 2 : 65536;
        durations = realloc(durations, durations_cap * sizeof *durations);
        if (!durations) { perror("realloc"); exit(1); }
    }
    durations[durations_len++] = seconds;
}

static int start(struct conn *c) {
    memset(c, 0, offsetof(struct conn, buf));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) { perror("socket"); return -1; }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->started = c->last_progress = now();
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        return -1;
    }
    c->state = HANDSHAKE;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
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

/* Parse whole frames out of the buffer. Returns 1 when the connection is done, -1 on error. */
static int frames(struct conn *c) {
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
            if (++c->texts == 2 && !c->close_sent) {
                if (send_close(c) < 0) return -1;
                c->state = CLOSING;
            }
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

static void finish(struct conn *c, int failed) {
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
    if (!stopping && start(c) < 0) {
        errors++;
        c->fd = -1;
    }
}

static void on_event(struct conn *c, uint32_t events) {
    if (c->state == HANDSHAKE && !c->sent_request) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        int error = 0;
        socklen_t len = sizeof error;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &len);
        if (error || send_all(c->fd, request, request_len) < 0) { finish(c, 1); return; }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->sent_request = 1;
        return;
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->used, sizeof c->buf - c->used, 0);
        if (n == 0) { /* the server closed: after its close frame, that ends the cycle */
            finish(c, c->state != CLOSING);
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN) return;
            finish(c, 1);
            return;
        }
        c->used += n;
        c->last_progress = now();
        if (c->state == HANDSHAKE) {
            unsigned char *end = memmem(c->buf, c->used, "\r\n\r\n", 4);
            if (!end) {
                if (c->used == sizeof c->buf) { finish(c, 1); return; }
                continue;
            }
            if (c->used < 12 || memcmp(c->buf + 9, "101", 3) != 0) { finish(c, 1); return; }
            size_t head = end + 4 - c->buf;
            memmove(c->buf, c->buf + head, c->used - head);
            c->used -= head;
            c->state = FRAMES;
        }
        if (frames(c) < 0) { finish(c, 1); return; }
    }
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s PORT PATH CLIENTS SECONDS\n", argv[0]);
        return 2;
    }
    port = atoi(argv[1]);
    path = argv[2];
    int clients = atoi(argv[3]);
    double seconds = atof(argv[4]);
    request_len = snprintf(request, sizeof request,
        "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path, port);
    epfd = epoll_create1(0);
    struct conn *conns = calloc(clients, sizeof *conns);
    double began = now();
    for (int i = 0; i < clients; i++)
        if (start(&conns[i]) < 0) { errors++; conns[i].fd = -1; }
    struct epoll_event events[256];
    double stop_at = began + seconds, give_up = stop_at + 2.0;
    for (;;) {
        double t = now();
        if (!stopping && t >= stop_at) stopping = 1;
        int open = 0;
        for (int i = 0; i < clients; i++) {
            if (conns[i].fd < 0) continue;
            if (t - conns[i].last_progress > 5.0) { finish(&conns[i], 1); continue; }
            open++;
        }
        if (stopping && (!open || t >= give_up)) break;
        int n = epoll_wait(epfd, events, 256, 50);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c->fd >= 0) on_event(c, events[i].events);
        }
    }
    double elapsed = now() - began;
    qsort(durations, durations_len, sizeof *durations, compare);
    double p50 = durations_len ? durations[durations_len / 2] * 1e3 : 0;
    double p99 = durations_len ? durations[(size_t)(durations_len * 0.99)] * 1e3 : 0;
    printf("{\"cycles\": %ld, \"refused\": %ld, \"errors\": %ld, \"elapsed_s\": %.3f, \"cycle_p50_ms\": %.3f, \"cycle_p99_ms\": %.3f}\n",
           cycles, refused, errors, elapsed, p50, p99);
    return 0;
}
