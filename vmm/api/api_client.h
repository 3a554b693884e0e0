/* A blocking client for padcell's control socket (vmm/api/api.h): one keep-alive connection, one request at a time. */
#ifndef PADCELL_API_CLIENT_H
#define PADCELL_API_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

struct api_client {
	int fd;
	char path[108];
	int timeout_ms; /* per request: connecting, sending and the whole answer */
};

#define API_CLIENT_TIMEOUT_MS  10000  /* GET and PATCH */
#define API_SNAPSHOT_TIMEOUT_MS 600000 /* writing a large VM's memory can take a while */

/*
 * Connects to the socket at path.  0, or -errno with err set: -ENOENT (no such socket),
 * -ECONNREFUSED (a socket nobody serves: the VM is gone), -ENOTSOCK (not a socket), ...
 */
int api_client_connect(struct api_client *c, const char *path, char *err, size_t errlen);
void api_client_close(struct api_client *c);

/*
 * Sends METHOD PATH with an optional JSON body and reads the answer: its status into *status
 * and its body, NUL-terminated and cut to bodylen, into body.  0, or -errno with err set when
 * no HTTP answer came (-EPROTO: what came back is not HTTP).
 */
int api_client_request(struct api_client *c, const char *method, const char *path, const char *json, int *status,
		       char *body, size_t bodylen, char *err, size_t errlen);

/* What GET / says. */
struct api_info {
	char id[128];
	char state[32];
	char vmm_version[64];
	char app_name[64];
};

/*
 * GET /, checked to come from padcell (app_name "padcell").  0, -EPROTO when the socket does not
 * speak padcell's API, or another -errno; err says which.
 */
int api_client_info(struct api_client *c, struct api_info *info, char *err, size_t errlen);
/* PATCH /vm {"state": "Paused"|"Resumed"}: 0, or -EIO with the server's fault_message in err. */
int api_client_set_paused(struct api_client *c, bool paused, char *err, size_t errlen);
/* PUT /snapshot/create with full paths: 0, or -EIO with the server's fault_message in err. */
int api_client_snapshot(struct api_client *c, const char *state_path, const char *mem_path, char *err,
			size_t errlen);

/*
 * PUT /network/policy: the NIC's rules replaced by rules[0..n-1] (as --allow) and open mode.
 * 0, or -EIO with the server's fault_message in err (a bad rule, no NIC, ...).
 */
int api_client_set_policy(struct api_client *c, const char *const *rules, size_t n, bool open, char *err,
			  size_t errlen);
/* GET /network/policy: its JSON body into body (cut to bodylen).  0, or -EIO with the fault in err. */
int api_client_get_policy(struct api_client *c, char *body, size_t bodylen, char *err, size_t errlen);

#endif
