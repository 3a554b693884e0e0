/* The control socket's client: blocking requests with a deadline, answers parsed by vmm/api/http.c and Jansson. */
#include "vmm/api/api_client.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/err.h"
#include "vmm/util.h"
#include "vmm/api/http.h"

int api_client_connect(struct api_client *c, const char *path, char *err, size_t errlen)
{
	c->fd = -1;
	c->timeout_ms = API_CLIENT_TIMEOUT_MS;
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(c->path))
		return errorf(err, errlen, -ENAMETOOLONG, "'%s': a socket path must be 1 to 107 bytes", path);
	memcpy(c->path, path, n + 1);
	struct stat st;
	if (stat(path, &st) < 0) {
		if (errno == ENOENT)
			return errorf(err, errlen, -ENOENT, "'%s' does not exist: is the VM running with --api-sock %s?", path,
				      path);
		return errorf(err, errlen, -errno, "'%s': %s", path, strerror(errno));
	}
	if (!S_ISSOCK(st.st_mode))
		return errorf(err, errlen, -ENOTSOCK, "'%s' is not a socket", path);
	enum unix_step at;
	int fd = unix_connect(path, 0, &at);
	if (fd < 0 && at == UNIX_STEP_SOCKET)
		return errorf(err, errlen, fd, "socket: %s", strerror(-fd));
	if (fd == -ECONNREFUSED)
		return errorf(err, errlen, fd, "'%s': nobody is serving this socket (has the VM exited?)", path);
	if (fd < 0)
		return errorf(err, errlen, fd, "cannot connect to '%s': %s", path, strerror(-fd));
	c->fd = fd;
	return 0;
}

void api_client_close(struct api_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* Waits until fd is ready for events, or the deadline.  0, or -ETIMEDOUT. */
static int wait_fd(int fd, short events, double deadline)
{
	for (;;) {
		double left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = { .fd = fd, .events = events };
		int n = poll(&p, 1, left > 60000 ? 60000 : (int)left + 1); /* +1: no busy loop on a fraction */
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static int send_all(struct api_client *c, const char *buf, size_t len, double deadline, char *err,
		    size_t errlen)
{
	while (len) {
		int rc = wait_fd(c->fd, POLLOUT, deadline);
		if (rc)
			return errorf(err, errlen, rc, "'%s': the server did not take the request in time", c->path);
		ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return errorf(err, errlen, -errno, "'%s': cannot send: %s", c->path, strerror(errno));
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int api_client_request(struct api_client *c, const char *method, const char *path, const char *json, int *status,
		       char *body, size_t bodylen, char *err, size_t errlen)
{
	if (c->fd < 0) {
		/* The server closed the last connection (Connection: close): a new one. */
		char p[sizeof(c->path)];
		memcpy(p, c->path, sizeof(p));
		int t = c->timeout_ms;
		int rc = api_client_connect(c, p, err, errlen);
		c->timeout_ms = t;
		if (rc)
			return rc;
	}
	double deadline = now_ms() + c->timeout_ms;
	size_t jlen = json ? strlen(json) : 0;
	if (jlen > HTTP_BODY_MAX)
		return errorf(err, errlen, -E2BIG, "request body over %u bytes", HTTP_BODY_MAX);
	char head[512];
	int hn;
	if (json)
		hn = snprintf(head, sizeof(head),
			      "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
			      "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
			      method, path, jlen);
	else
		hn = snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n",
			      method, path);
	if (hn < 0 || (size_t)hn >= sizeof(head))
		return errorf(err, errlen, -ENAMETOOLONG, "request path too long");
	int rc = send_all(c, head, (size_t)hn, deadline, err, errlen);
	if (!rc && jlen)
		rc = send_all(c, json, jlen, deadline, err, errlen);
	if (rc) {
		api_client_close(c);
		return rc;
	}

	size_t cap = HTTP_HEAD_MAX + HTTP_BODY_MAX, len = 0;
	char *buf = malloc(cap);
	if (!buf)
		return errorf(err, errlen, -ENOMEM, "out of memory");
	struct http_response resp;
	char why[160];
	for (;;) {
		int pr = http_parse_response_head(buf, len, &resp, why, sizeof(why));
		if (pr < 0) {
			rc = errorf(err, errlen, -EPROTO, "'%s' does not speak HTTP (%s): is it padcell's --api-sock?", c->path,
				    why);
			break;
		}
		if (pr == 1 && resp.status >= 100 && resp.status < 200) {
			/* An interim answer (100 Continue): the real one follows. */
			memmove(buf, buf + resp.head_len, len - resp.head_len);
			len -= resp.head_len;
			continue;
		}
		if (pr == 1 && len - resp.head_len >= resp.content_length)
			break;
		if (len == cap) {
			rc = errorf(err, errlen, -EPROTO, "'%s': the answer is too large", c->path);
			break;
		}
		rc = wait_fd(c->fd, POLLIN, deadline);
		if (rc) {
			rc = errorf(err, errlen, rc, "'%s': no answer to %s %s within %d s", c->path, method, path,
				    c->timeout_ms / 1000);
			break;
		}
		ssize_t n = recv(c->fd, buf + len, cap - len, MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0) {
			rc = errorf(err, errlen, -errno, "'%s': %s", c->path, strerror(errno));
			break;
		}
		if (n == 0) {
			rc = errorf(err, errlen, -EPROTO, "'%s': the connection closed %s", c->path,
				    len ? "in the middle of the answer" : "without an answer (is it padcell's --api-sock?)");
			break;
		}
		len += (size_t)n;
	}
	if (!rc) {
		*status = resp.status;
		size_t blen = resp.content_length < bodylen ? resp.content_length : bodylen - 1;
		memcpy(body, buf + resp.head_len, blen);
		body[blen] = '\0';
		if (!resp.keep_alive)
			api_client_close(c);
	} else {
		api_client_close(c);
	}
	free(buf);
	return rc;
}

/* The fault_message of an error answer, else the raw body. */
static int fault_of(int status, const char *body, const char *what, char *err, size_t errlen)
{
	json_t *o = json_loads(body, 0, NULL);
	const char *msg = json_string_value(json_object_get(o, "fault_message"));
	if (msg)
		errorf(err, errlen, -EIO, "%s", msg);
	else
		errorf(err, errlen, -EIO, "%s: HTTP %d %s%s%s", what, status, http_status_text(status), body[0] ? ": " : "",
		       body);
	json_decref(o);
	return -EIO;
}

int api_client_info(struct api_client *c, struct api_info *info, char *err, size_t errlen)
{
	memset(info, 0, sizeof(*info));
	char body[4096];
	int status;
	int rc = api_client_request(c, "GET", "/", NULL, &status, body, sizeof(body), err, errlen);
	if (rc)
		return rc;
	if (status != 200)
		return fault_of(status, body, "GET /", err, errlen);
	json_t *o = json_loads(body, 0, NULL);
	const char *app = json_string_value(json_object_get(o, "app_name"));
	const char *state = json_string_value(json_object_get(o, "state"));
	if (!app || !state) {
		json_decref(o);
		return errorf(err, errlen, -EPROTO, "'%s' answers HTTP but not with padcell's API", c->path);
	}
	snprintf(info->app_name, sizeof(info->app_name), "%s", app);
	snprintf(info->state, sizeof(info->state), "%s", state);
	const char *s = json_string_value(json_object_get(o, "id"));
	snprintf(info->id, sizeof(info->id), "%s", s ? s : "");
	s = json_string_value(json_object_get(o, "vmm_version"));
	snprintf(info->vmm_version, sizeof(info->vmm_version), "%s", s ? s : "");
	json_decref(o);
	if (strcmp(info->app_name, "padcell"))
		return errorf(err, errlen, -EPROTO, "'%s' is the API of %s, not padcell", c->path, info->app_name);
	return 0;
}

int api_client_set_paused(struct api_client *c, bool paused, char *err, size_t errlen)
{
	char body[4096];
	int status;
	int rc = api_client_request(c, "PATCH", "/vm", paused ? "{\"state\":\"Paused\"}" : "{\"state\":\"Resumed\"}", &status,
				    body, sizeof(body), err, errlen);
	if (rc)
		return rc;
	return status == 204 ? 0 : fault_of(status, body, "PATCH /vm", err, errlen);
}

int api_client_snapshot(struct api_client *c, const char *state_path, const char *mem_path, char *err,
			size_t errlen)
{
	json_t *o = json_pack("{s:s, s:s, s:s}", "snapshot_type", "Full", "snapshot_path", state_path, "mem_file_path",
			      mem_path);
	char *req = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(o);
	if (!req)
		return errorf(err, errlen, -EINVAL, "the snapshot paths cannot be sent (not UTF-8?)");
	char body[4096];
	int status;
	int t = c->timeout_ms;
	c->timeout_ms = API_SNAPSHOT_TIMEOUT_MS;
	int rc = api_client_request(c, "PUT", "/snapshot/create", req, &status, body, sizeof(body), err, errlen);
	c->timeout_ms = t;
	free(req);
	if (rc)
		return rc;
	return status == 204 ? 0 : fault_of(status, body, "PUT /snapshot/create", err, errlen);
}

int api_client_set_policy(struct api_client *c, const char *const *rules, size_t n, bool open, char *err,
			  size_t errlen)
{
	json_t *list = json_array();
	for (size_t i = 0; list && i < n; i++)
		if (json_array_append_new(list, json_string(rules[i]))) {
			json_decref(list);
			list = NULL;
		}
	json_t *o = list ? json_pack("{s:o, s:b}", "allow", list, "open", open) : NULL;
	char *req = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(o);
	if (!req)
		return errorf(err, errlen, -EINVAL, "the rules cannot be sent (not UTF-8?)");
	char body[4096];
	int status;
	int rc = api_client_request(c, "PUT", "/network/policy", req, &status, body, sizeof(body), err, errlen);
	free(req);
	if (rc)
		return rc;
	return status == 204 ? 0 : fault_of(status, body, "PUT /network/policy", err, errlen);
}

int api_client_get_policy(struct api_client *c, char *body, size_t bodylen, char *err, size_t errlen)
{
	int status;
	int rc = api_client_request(c, "GET", "/network/policy", NULL, &status, body, bodylen, err, errlen);
	if (rc)
		return rc;
	return status == 200 ? 0 : fault_of(status, body, "GET /network/policy", err, errlen);
}
