// forwarded_address_key: the client address a reverse proxy reports, in
// every form docs/edge.md lists, keyed like a peer address
// (IPv6 by its /64).

#include <catch2/catch.hpp>

#include <iwsec/iwsec.hpp>

using iwsec::client_address_key;
using iwsec::forwarded_address_key;

TEST_CASE("forwarded_address_key reads every form proxies write", "[lockout][edge]") {
  CHECK(forwarded_address_key("1.2.3.4") == "1.2.3.4");
  CHECK(forwarded_address_key("1.2.3.4:5678") == "1.2.3.4");
  CHECK(forwarded_address_key(" 1.2.3.4 ") == "1.2.3.4");
  CHECK(forwarded_address_key("[2001:db8::1]:443") == client_address_key("2001:db8::1"));
  CHECK(forwarded_address_key("[2001:db8::1]") == client_address_key("2001:db8::1"));
  CHECK(forwarded_address_key("\"[2001:db8::1]:443\"") == client_address_key("2001:db8::1"));
  CHECK(forwarded_address_key("2001:db8::1") == client_address_key("2001:db8::1"));
  CHECK(forwarded_address_key("fe80::1%eth0") == client_address_key("fe80::1"));
  CHECK(forwarded_address_key("[fe80::1%eth0]:80") == client_address_key("fe80::1"));
  CHECK(forwarded_address_key("[::ffff:10.0.0.1]:80") == "10.0.0.1");
}

TEST_CASE("forwarded_address_key takes the last hop", "[lockout][edge]") {
  CHECK(forwarded_address_key("9.9.9.9, 1.2.3.4:5678") == "1.2.3.4");
  CHECK(forwarded_address_key("9.9.9.9,[2001:db8::1]:443") == client_address_key("2001:db8::1"));
  CHECK(forwarded_address_key("[2001:db8:1::1]:1, fe80::1%eth0") == client_address_key("fe80::1"));
}

TEST_CASE("forwarded_address_key groups IPv6 by /64, whatever the port or zone", "[lockout][edge]") {
  CHECK(forwarded_address_key("[2001:db8::1]:443") == forwarded_address_key("[2001:db8::ffff]:80"));
  CHECK(forwarded_address_key("[2001:db8::1]:443") == forwarded_address_key("2001:db8::2"));
  CHECK(forwarded_address_key("fe80::1%eth0") == forwarded_address_key("fe80::2%eth1"));
  CHECK(forwarded_address_key("[2001:db8::1]:443") != forwarded_address_key("[2001:db8:0:1::1]:443"));
  CHECK(forwarded_address_key("1.2.3.4:1") != forwarded_address_key("1.2.3.5:1"));
}

TEST_CASE("forwarded_address_key keys what is no address as it is", "[lockout][edge]") {
  CHECK(forwarded_address_key("unknown") == "unknown");
  CHECK(forwarded_address_key("[2001:db8::1") == "[2001:db8::1");
  CHECK(forwarded_address_key("[2001:db8::1]x") == "[2001:db8::1]x");
  CHECK(forwarded_address_key("1.2.3") == "1.2.3");
  CHECK(forwarded_address_key("") == "");
}
