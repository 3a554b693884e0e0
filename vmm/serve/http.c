/* `padcell serve`'s HTTP front on libmicrohttpd: a request's body kept up to the bound, then one API call. */
#include "vmm/serve/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vmm/err.h"
#include "vmm/serve/api.h"
#include "vmm/serve/envd.h"

#define HTTP_CONN_MAX     64  /* connections at once; more wait in the listen queue */
#define HTTP_IDLE_TIMEOUT 30  /* seconds a connection may sit without a byte */

struct serve_http {
	struct MHD_Daemon *d;
	struct serve_table *t;
	const struct serve_keys *keys;
};

struct req_body {
	char *buf;
	size_t len, cap;
	bool overflow;
	struct envd_instream *in; /* a client stream's call, fed as its body arrives (no body kept) */
	bool answered;            /* its refusal was queued at the first call */
};

static enum MHD_Result queue(struct MHD_Connection *conn, const struct serve_reply *rp)
{
	const char *body = rp->body ? rp->body : "";
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	if (rp->body)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	enum MHD_Result ok = MHD_queue_response(conn, rp->status, r);
	MHD_destroy_response(r);
	return ok;
}

struct query_acc {
	struct serve_query_arg a[SERVE_QUERY_MAX];
	size_t n;
	bool overflow;
};

static enum MHD_Result query_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct query_acc *q = cls;
	if (q->n == SERVE_QUERY_MAX) {
		q->overflow = true;
		return MHD_NO;
	}
	q->a[q->n++] = (struct serve_query_arg){ .key = key, .value = value ? value : "" };
	return MHD_YES;
}

static const char *header(struct MHD_Connection *conn, const char *name)
{
	return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

/*
 * A live server stream: envd runs the call on a worker thread and sends envelopes on a socket
 * pair; the response reads them as they come (this server has a thread per connection, so the
 * reader may block).  Its strings and body are copies: the worker may outlive the request.
 */
struct envd_live {
	struct serve_http *h;
	int sv[2];
	int client_fd;        /* the HTTP client's socket: its hangup ends a quiet stream (below) */
	pthread_t th;
	char *s[7];           /* method, path, id, token, api key, content type, timeout */
	char *body;
	size_t len;
	struct envd_request rq;
	struct envd_reply rp;
};

static void *live_run(void *arg)
{
	struct envd_live *l = arg;
	envd_handle_live(l->h->t, &envd_vsock_dialer, l->h->keys, &l->rq, l->sv[1], &l->rp);
	close(l->sv[1]); /* the reader sees the end of the stream */
	return NULL;
}

static void live_free(void *cls)
{
	struct envd_live *l = cls;
	close(l->sv[0]); /* a worker still sending (the client left) gets EPIPE and drops the rest */
	pthread_join(l->th, NULL);
	for (size_t i = 0; i < sizeof(l->s) / sizeof(l->s[0]); i++)
		free(l->s[i]);
	free(l->body);
	free(l->rp.body);
	free(l);
}

/*
 * The next bytes of the stream.  While it waits here this connection's thread sees nothing else
 * of the client, so the client's socket is watched too: a client that leaves a quiet stream (the
 * SDK's WatchHandle.stop(), a silent command's caller gone) ends the response at once, and with
 * it the worker's call (live_free), instead of at the next bytes it would be sent.
 */
static ssize_t live_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct envd_live *l = cls;
	for (;;) {
		struct pollfd pf[2] = {{.fd = l->sv[0], .events = POLLIN}, {.fd = l->client_fd, .events = POLLRDHUP}};
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		if (!pf[0].revents) {
			if (pf[1].revents & (POLLRDHUP | POLLHUP | POLLERR))
				return MHD_CONTENT_READER_END_WITH_ERROR;
			continue;
		}
		ssize_t n = recv(l->sv[0], buf, max, MSG_DONTWAIT);
		if (n > 0)
			return n;
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		return n == 0 ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
	}
}

static char *dup_or_null(const char *v)
{
	return v ? strdup(v) : NULL;
}

static enum MHD_Result envd_queue_live(struct serve_http *h, struct MHD_Connection *conn, const struct envd_request *in)
{
	struct envd_live *l = calloc(1, sizeof(*l));
	if (!l)
		return MHD_NO;
	l->h = h;
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	l->client_fd = ci ? ci->connect_fd : -1; /* poll skips -1: then only the stream's bytes end a wait */
	const char *v[7] = {in->method, in->path, in->sandbox_id, in->token, in->api_key, in->content_type, in->timeout_ms};
	for (int i = 0; i < 7; i++)
		l->s[i] = dup_or_null(v[i]);
	l->body = malloc(in->len ? in->len : 1);
	if (l->body && in->len)
		memcpy(l->body, in->body, in->len);
	l->len = in->len;
	l->rq = (struct envd_request){
		.method = l->s[0], .path = l->s[1], .sandbox_id = l->s[2], .token = l->s[3], .api_key = l->s[4],
		.content_type = l->s[5], .timeout_ms = l->s[6], .body = l->body, .len = l->len, .overflow = in->overflow,
	};
	if (!l->body || !l->s[0] || !l->s[1] || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, l->sv)) {
		for (int i = 0; i < 7; i++)
			free(l->s[i]);
		free(l->body);
		free(l);
		return MHD_NO;
	}
	if (pthread_create(&l->th, NULL, live_run, l)) {
		close(l->sv[1]);
		l->sv[1] = -1;
		envd_handle(h->t, &envd_vsock_dialer, h->keys, &l->rq, &l->rp); /* no thread: buffered */
		l->th = pthread_self();
	}
	/* the first byte (the stream began: 200) or the end with nothing sent (an error in rp); the
	 * worker's every wait is bounded (the dial, the agent's replies, the command's timeout) */
	char c;
	ssize_t n;
	do
		n = recv(l->sv[0], &c, 1, MSG_PEEK);
	while (n < 0 && errno == EINTR);
	struct MHD_Response *r;
	unsigned status;
	if (n > 0) {
		status = 200;
		r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, live_read, l, live_free);
		if (!r) {
			live_free(l); /* its closed end ends the worker's call at once */
			return MHD_NO;
		}
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/connect+json");
	} else {
		if (pthread_equal(l->th, pthread_self())) {
			status = l->rp.status;
		} else {
			pthread_join(l->th, NULL);
			status = l->rp.status;
		}
		r = MHD_create_response_from_buffer(l->rp.len, l->rp.body ? l->rp.body : (void *)"", MHD_RESPMEM_MUST_COPY);
		if (r)
			MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
						l->rp.content_type ? l->rp.content_type : "application/json");
		close(l->sv[0]);
		for (int i = 0; i < 7; i++)
			free(l->s[i]);
		free(l->body);
		free(l->rp.body);
		free(l);
	}
	if (!r)
		return MHD_NO;
	enum MHD_Result ok = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ok;
}

/* A reply of envd's (body malloc'd or NULL) queued on conn. */
static enum MHD_Result envd_reply_queue(struct MHD_Connection *conn, struct envd_reply *rp)
{
	/* a reply without a body (health's 204) is a static empty buffer: nothing to free */
	struct MHD_Response *r = rp->body ? MHD_create_response_from_buffer(rp->len, rp->body, MHD_RESPMEM_MUST_FREE)
					  : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	if (!r) {
		free(rp->body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, rp->content_type ? rp->content_type : "application/json");
	enum MHD_Result ok = MHD_queue_response(conn, rp->status, r);
	MHD_destroy_response(r);
	return ok;
}

/* envd's calls (vmm/serve/envd.c): the sandbox named by E2B's single-URL header, bytes replies. */
static enum MHD_Result envd_queue(struct serve_http *h, struct MHD_Connection *conn, const char *url,
				  const char *method, const struct req_body *b)
{
	struct envd_request rq = {
		.method = method, .path = url, .sandbox_id = header(conn, "E2b-Sandbox-Id"),
		.token = header(conn, "X-Access-Token"), .api_key = header(conn, "X-API-Key"),
		.content_type = header(conn, MHD_HTTP_HEADER_CONTENT_TYPE), .timeout_ms = header(conn, "Connect-Timeout-Ms"),
		.file_path = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "path"),
		.body = b->buf, .len = b->len, .overflow = b->overflow,
	};
	if (envd_streams(url))
		return envd_queue_live(h, conn, &rq);
	struct envd_reply rp;
	envd_handle(h->t, &envd_vsock_dialer, h->keys, &rq, &rp);
	return envd_reply_queue(conn, &rp);
}

/*
 * process.Process/StreamInput at its first call (headers only): the call opened, its envelopes
 * fed by handle() as the upload callback hands them over (this connection's own thread may block
 * on the agent meanwhile: every wait of it is bounded), answered when the body ends.
 */
static enum MHD_Result instream_begin(struct serve_http *h, struct MHD_Connection *conn, const char *url,
				      const char *method, struct req_body *b)
{
	struct envd_request rq = {
		.method = method, .path = url, .sandbox_id = header(conn, "E2b-Sandbox-Id"),
		.token = header(conn, "X-Access-Token"), .api_key = header(conn, "X-API-Key"),
		.content_type = header(conn, MHD_HTTP_HEADER_CONTENT_TYPE),
	};
	struct envd_reply rp;
	b->in = envd_instream_open(h->t, &envd_vsock_dialer, h->keys, &rq, &rp);
	if (b->in)
		return MHD_YES;
	b->answered = true;
	return envd_reply_queue(conn, &rp);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
			      const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	struct serve_http *h = cls;
	struct req_body *b = *con_cls;
	if (!b) {
		/* the first call, headers only: a body announced past the bound is refused before it is read */
		b = calloc(1, sizeof(*b));
		if (!b)
			return MHD_NO;
		*con_cls = b;
		if (envd_client_streams(url))
			return instream_begin(h, conn, url, method, b);
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > SERVE_BODY_MAX) {
			struct serve_reply rp;
			serve_reply_error(&rp, 413, "the request body is over %u bytes", SERVE_BODY_MAX);
			enum MHD_Result ok = queue(conn, &rp);
			free(rp.body);
			return ok;
		}
		return MHD_YES;
	}
	if (b->answered) {
		*upload_size = 0; /* refused at its start: the rest is read and dropped */
		return MHD_YES;
	}
	if (b->in) {
		if (*upload_size) {
			envd_instream_feed(b->in, upload, *upload_size);
			*upload_size = 0;
			return MHD_YES;
		}
		struct envd_reply rp;
		envd_instream_close(b->in, &rp);
		b->in = NULL;
		return envd_reply_queue(conn, &rp);
	}
	if (*upload_size) {
		size_t n = *upload_size;
		if (b->overflow || b->len + n > SERVE_BODY_MAX) {
			b->overflow = true; /* the rest is read and dropped (a chunked body has no length up front) */
		} else {
			if (b->len + n > b->cap) {
				size_t cap = b->cap ? b->cap : 4096;
				while (cap < b->len + n)
					cap *= 2;
				char *p = realloc(b->buf, cap);
				if (!p)
					return MHD_NO;
				b->buf = p;
				b->cap = cap;
			}
			memcpy(b->buf + b->len, upload, n);
			b->len += n;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (envd_route(url))
		return envd_queue(h, conn, url, method, b);
	struct serve_request rq = {
		.method = method, .path = url, .body = b->buf, .len = b->len, .overflow = b->overflow,
		.api_key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-API-Key"),
	};
	struct query_acc q = { .n = 0 };
	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, query_arg, &q);
	rq.query = q.a;
	rq.nquery = q.n;
	rq.query_overflow = q.overflow;
	struct serve_reply rp;
	serve_api_handle(h->t, h->keys, &rq, &rp);
	enum MHD_Result ok = queue(conn, &rp);
	free(rp.body);
	return ok;
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct req_body *b = *con_cls;
	if (b) {
		if (b->in)
			envd_instream_close(b->in, NULL); /* the client left mid-stream */
		free(b->buf);
		free(b);
		*con_cls = NULL;
	}
}

struct serve_http *serve_http_start(struct serve_table *t, const struct serve_keys *keys, const struct sockaddr_in *addr,
				    unsigned *port, char *err, size_t errlen)
{
	struct serve_http *h = calloc(1, sizeof(*h));
	if (!h) {
		errorf(err, errlen, -ENOMEM, "out of memory");
		return NULL;
	}
	h->t = t;
	h->keys = keys;
	h->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL,
				0, NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)addr,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_CONN_MAX, MHD_OPTION_CONNECTION_TIMEOUT,
				(unsigned)HTTP_IDLE_TIMEOUT, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
	if (!h->d) {
		int e = errno;
		char a[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &addr->sin_addr, a, sizeof(a));
		errorf(err, errlen, -e, "cannot listen on %s:%u: %s", a, ntohs(addr->sin_port), e ? strerror(e) : "refused");
		free(h);
		return NULL;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
	*port = di ? di->port : ntohs(addr->sin_port);
	return h;
}

void serve_http_stop(struct serve_http *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->d);
	free(h);
}
