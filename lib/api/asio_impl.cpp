// Asio's compiled part, once for the whole program (BOOST_ASIO_SEPARATE_COMPILATION, exported to
// every consumer): the library's other files and the application's only see declarations.
// Left out with MIMOBOX_BUNDLE_ASIO_IMPL=OFF, for applications that compile it themselves.
#include <boost/asio/impl/src.hpp>
