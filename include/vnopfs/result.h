// result.h: how a call inside the stack reports failure: it returns an int, 0 or an errno value (XNU's
// VNOP contracts); nothing below src/fuse/ throws. A call that produces a value returns it through an
// out-parameter, written only on success unless its contract says otherwise. TRY() propagates the errno
// of a failed call. (Start-up code, which reports to a user, returns a message instead: see
// src/daemon/daemon.h.)
#pragma once

// TRY(expr): expr is an int errno call; return it from the enclosing function when non-zero.
#define TRY(expr)                      \
  do {                                 \
    if (int _try_err = (expr)) return _try_err; \
  } while (0)
