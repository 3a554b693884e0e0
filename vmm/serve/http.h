/* `padcell serve`'s HTTP front: libmicrohttpd, a thread per connection, bodies bounded, into vmm/serve/api.c. */
#ifndef PADCELL_SERVE_HTTP_H
#define PADCELL_SERVE_HTTP_H

#include <netinet/in.h>

#include "vmm/serve/table.h"

struct serve_keys; /* vmm/serve/envd.h */

struct serve_http;

/*
 * Listens on addr (port 0: one the kernel picks; *port says which) and serves t with keys.
 * NULL with err set when it cannot listen.  t and keys must outlive it.
 */
struct serve_http *serve_http_start(struct serve_table *t, const struct serve_keys *keys, const struct sockaddr_in *addr,
				    unsigned *port, char *err, size_t errlen);

/* Stops listening and waits for the connections' threads. */
void serve_http_stop(struct serve_http *h);

#endif
