// req_list.h: an intrusive list of io_request through io_request::q_hook (no allocation on the hot path).
// A request is on at most one such list at a time: the one of the device currently holding it.
#pragma once

#include <boost/intrusive/list.hpp>

#include "vnopfs/device.h"

namespace vnopfs::dev {

using req_list = boost::intrusive::list<
    io_request, boost::intrusive::member_hook<io_request, decltype(io_request::q_hook), &io_request::q_hook>,
    boost::intrusive::constant_time_size<true>>;

}  // namespace vnopfs::dev
