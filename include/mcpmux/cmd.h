/*
 * cmd: the front ends, one per subcommand.  Each returns mcpmux's exit status.
 */
#ifndef MCPMUX_CMD_H
#define MCPMUX_CMD_H

#include "mcpmux/cli.h"

/* mcpmux [OPTIONS] -- COMMAND: one client on stdio, one server at a time. */
int cmd_wrap(const struct mcpmux_options *o);
/* mcpmux serve [OPTIONS] -- COMMAND: one server per session ID, envelopes on stdio or a socket. */
int cmd_serve(const struct mcpmux_options *o);
/* mcpmux demo: drive a wrapped fixture server as a client would, and show the teardown. */
int cmd_demo(int argc, char **argv);

#endif
