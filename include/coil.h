/* SPDX-License-Identifier: MIT */
/**
 * @file coil.h
 * asyncio's core as a C library: one thread, one event loop.
 * Include this one header; it brings in every coil/ header.
 */
/**
 * @mainpage
 * coil's API, from its public headers. A program includes coil.h, which
 * brings in every header of coil/; the Files page lists them, each with
 * what it covers. Each header's page opens with how its part of the API
 * works, then documents every function, type and macro: what it does,
 * its errors, who owns what, whether it may suspend, what a cancel does.
 * The conventions every function follows are at the top of coil/common.h.
 *
 * The same reference is installed as man pages (section 3): a page per
 * header (`man coil_task.h`), found by the name of each of its functions,
 * types and macros too (`man coil_task_spawn`).
 */
#ifndef COIL_H
#define COIL_H

/** The major version of coil these headers come with. */
#define COIL_VERSION_MAJOR 0
/** The minor version of coil these headers come with. */
#define COIL_VERSION_MINOR 1
/** The patch version of coil these headers come with. */
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
