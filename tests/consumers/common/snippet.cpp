// The snippet, verbatim: with nothing but <httplib.h> and iwsec's
// header (the single header in the single-header consumer), it must compile.
#include <httplib.h>
#include <iwsec/iwsec.hpp>

void mount(httplib::Server& s, iwsec::UserStore& u, iwsec::Signer& g) { iwsec::mount_security_routes(s, u, g); }
