/* The control socket (listen.control, a unix socket of mode 0660): the
 * admin endpoints remedyctl uses. Everything an operator does through it is
 * audited and passes the same guardrails as rule actions. */
#pragma once

#include "remedyd-forward.h"

/* Serves on listen_fd (taken over always). */
int control_new(Daemon *d, int listen_fd, Control **ret);
Control *control_free(Control *c);
