/* The HTTP layer (libmicrohttpd): start a daemon that answers through srv_route. */
#ifndef DF_SERVER_SRV_HTTP_H
#define DF_SERVER_SRV_HTTP_H

#include <stdbool.h>
#include <sys/socket.h>

#include "server/srv_routes.h"

struct MHD_Daemon;

/* NULL when the address could not be bound. Stop with MHD_stop_daemon. */
struct MHD_Daemon *srv_http_start(srv_server *s, const struct sockaddr *addr, bool ipv6);
/* The port actually bound (useful after --port 0). */
int srv_http_port(struct MHD_Daemon *d);

#endif
