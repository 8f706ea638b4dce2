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
/* mcpmux connect [--session ID] [--keep] PATH: plain MCP stdio <-> one session of a serve. */
int cmd_connect(int argc, char **argv);
/* mcpmux ctl PATH (list | stats | end SESSION): look at and steer a running serve. */
int cmd_ctl(int argc, char **argv);
/* mcpmux config (wrap | unwrap) FILE: route a client config's servers through mcpmux. */
int cmd_config(int argc, char **argv);
/* mcpmux log (show | stats) [FILE]: read a traffic log. */
int cmd_log(int argc, char **argv);
/* mcpmux ps [--json]: running instances, their sessions, orphans and labelled containers. */
int cmd_ps(int argc, char **argv);
/* mcpmux sweep [--dry-run] [--older-than D]: end the orphans of instances that are gone. */
int cmd_sweep(int argc, char **argv);
/* mcpmux demo: drive a wrapped fixture server as a client would, and show the teardown. */
int cmd_demo(int argc, char **argv);

#endif
