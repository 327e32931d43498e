// log.h: the device layer's one-line log. src/dev/ must not depend on src/vfs/, so it prints itself:
// "vnopfs: dev: <message>" on stderr, one line per event, written with a single fprintf (atomic enough
// for a line on a pipe or terminal).
#pragma once

#include <cstdio>

#define DEV_LOG(fmt, ...) std::fprintf(stderr, "vnopfs: dev: " fmt "\n" __VA_OPT__(, ) __VA_ARGS__)
