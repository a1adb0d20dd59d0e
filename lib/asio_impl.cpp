// Asio compiled once for the whole library (BOOST_ASIO_SEPARATE_COMPILATION): every other file
// only sees declarations, which keeps CI builds on two cores fast.
#include <boost/asio/impl/src.hpp>
