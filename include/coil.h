/* SPDX-License-Identifier: MIT */
/*
 * coil.h - asyncio's core as a C library: one thread, one event loop.
 * Include this one header; it brings in every coil/ header.
 */
#ifndef COIL_H
#define COIL_H

#define COIL_VERSION_MAJOR 0
#define COIL_VERSION_MINOR 1
#define COIL_VERSION_PATCH 0

#include "coil/channel.h"
#include "coil/common.h"
#include "coil/combinators.h"
#include "coil/debug.h"
#include "coil/executor.h"
#include "coil/future.h"
#include "coil/group.h"
#include "coil/io.h"
#include "coil/loop.h"
#include "coil/loop_group.h"
#include "coil/net.h"
#include "coil/process.h"
#include "coil/queue.h"
#include "coil/server.h"
#include "coil/signal.h"
#include "coil/stream.h"
#include "coil/sync.h"
#include "coil/task.h"
#include "coil/timeout.h"
#include "coil/tls.h"
#include "coil/udp.h"

#endif /* COIL_H */
