/*
 * Fuzzes the MCP layer of `padcell mcp` (vmm/mcp/mcp.c): the input is one message line, answered
 * by mcp_handle over a fake sandbox whose command prints bytes that are not UTF-8.  Every answer
 * must be one line of JSON, a JSON-RPC 2.0 object with a result or an error.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"
#include "vmm/mcp/mcp.h"

static int f_run(void *ctx, const struct mcp_run_req *req, struct mcp_run_res *res, char *err, size_t errlen)
{
	(void)ctx;
	if (!req->argv[0] || !req->argv[2] || req->argv[3])
		abort();
	res->out.data = strdup("out\xff\xfe\xc3(");
	res->out.len = strlen(res->out.data);
	res->err.data = strdup("");
	res->exit_code = 1;
	return 0;
}

static int f_read(void *ctx, const char *path, struct mcp_output *o, char *err, size_t errlen)
{
	(void)ctx;
	if (path[0] != '/')
		abort();
	o->data = strdup("text\n");
	o->len = 5;
	return 0;
}

static int f_write(void *ctx, const char *path, const void *data, size_t len, char *err, size_t errlen)
{
	(void)ctx;
	(void)data;
	(void)len;
	if (path[0] != '/')
		abort();
	return 0;
}

static int f_list(void *ctx, const char *path, struct mcp_entry **e, size_t *n, char *err, size_t errlen)
{
	(void)ctx;
	*e = calloc(1, sizeof(**e));
	if (!*e)
		return -12;
	(*e)[0] = (struct mcp_entry){ .type = '-', .mode = 0644, .size = 1, .name = "f" };
	*n = 1;
	return path[0] == '/' ? 0 : (abort(), 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct mcp_backend b = { .run = f_run, .read_file = f_read, .write_file = f_write, .list = f_list };
	struct mcp m;
	mcp_init(&m, &b, "0");
	char *p = malloc(size ? size : 1); /* exact size: ASan sees overreads */
	if (!p)
		return 0;
	memcpy(p, data, size);
	char *a = mcp_handle(&m, p, size);
	free(p);
	if (!a)
		return 0;
	if (strchr(a, '\n'))
		abort();
	json_error_t je;
	json_t *j = json_loads(a, 0, &je);
	if (!j || !json_is_object(j) || strcmp(json_string_value(json_object_get(j, "jsonrpc")) ?: "", "2.0") ||
	    !json_object_get(j, "result") == !json_object_get(j, "error"))
		abort();
	json_decref(j);
	free(a);
	return 0;
}
