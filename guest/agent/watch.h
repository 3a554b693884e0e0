/* The agent's directory watch (protocol 5, guest/agent/proto.h "Watching a directory"). */
#ifndef PADCELL_AGENT_WATCH_H
#define PADCELL_AGENT_WATCH_H

#include <stdint.h>

/*
 * Serves one WATCH (its payload p, len bytes) on connection conn: ERROR or OK, then the events,
 * until the host closes the connection.  0 when the watch ended as the protocol says (the host
 * left, or the final ERROR was sent), -1 when the connection failed or the request was malformed.
 */
int watch_serve(int conn, const uint8_t *p, uint32_t len);

#endif
