// config/mask.hpp: what is a secret and how settings are shown without one.
#include "config/mask.hpp"

#include <catch2/catch.hpp>

#include <libpq-fe.h>

#include <map>
#include <string>

namespace {

/// libpq's parse of `url` as keyword -> value (set options only); empty
/// when libpq cannot parse it.
std::map<std::string, std::string> parsed(const std::string& url) {
  std::map<std::string, std::string> r;
  char* err = nullptr;
  auto opts = PQconninfoParse(url.c_str(), &err);
  if (err != nullptr)
    PQfreemem(err);
  if (opts == nullptr)
    return r;
  for (auto o = opts; o->keyword != nullptr; ++o)
    if (o->val != nullptr)
      r[o->keyword] = o->val;
  PQconninfoFree(opts);
  return r;
}

} // namespace

TEST_CASE("secret librdkafka properties, by name", "[mask]") {
  for (auto key : {"sasl.password", "ssl.key.password", "ssl.keystore.password",
                   "sasl.jaas.config", "ssl.key.pem", "ssl_key",
                   "sasl.oauthbearer.client.secret", "sasl.oauthbearer.config",
                   "SASL.PASSWORD", "Some.Token", "x.credentials",
                   "ssl.key.location", "sasl.kerberos.keytab"}) {
    INFO(key);
    CHECK(ces::secret_property(key));
  }
  for (auto key : {"security.protocol", "sasl.mechanism", "sasl.username",
                   "bootstrap.servers", "acks", "ssl.ca.location",
                   "fetch.wait.max.ms"}) {
    INFO(key);
    CHECK_FALSE(ces::secret_property(key));
  }
  CHECK(ces::mask_property("sasl.password=a=b,c") == "sasl.password=***");
  CHECK(ces::mask_property("sasl.username=me") == "sasl.username=me");
  CHECK(ces::mask_property("no-equals-sign") == "***");
  CHECK(ces::mask_property("ssl.key.password=") == "ssl.key.password=***");
}

TEST_CASE("scrub_properties removes secret values from a text", "[mask]") {
  std::vector<std::string> props = {"sasl.password=hunter2", "acks=all",
                                    "ssl.key.password="};
  CHECK(ces::scrub_properties("bad hunter2 and hunter2; acks=all", props)
        == "bad *** and ***; acks=all");
  CHECK(ces::scrub_properties("nothing here", props) == "nothing here");
}

TEST_CASE("a masked connection string is what libpq reads, passwords ***",
          "[mask]") {
  // libpq's parse of the masked string equals the parse of the original
  // with every password option (dispchar '*') set to "***".
  for (std::string url :
       {"postgresql://sink:pa?ss@db/crm", "postgresql://sink:pa#ss@db:5433/crm",
        "postgres://u:p%40w@h1:1,h2:2/db?sslmode=require",
        "postgresql://u:pw@h1,h2:5/db", "postgresql://u:pw@h1:5,h2/db",
        "postgresql://u@[::1]:5432/db?sslpassword=k&application_name=a%20b",
        "postgresql://%2Ftmp%2Fsock/db?user=u&password=x",
        "postgresql://:pw@h/db", "postgresql://", "postgresql:///db",
        "postgresql://h/db?host=h2&port=1,2",
        "postgresql://u:pw@h/d%2Fb?options=-c%20x%3Dy",
        "host=db user=u password='x y' dbname=crm",
        "host=db sslpassword=a\\'b application_name='a b' port=5432",
        "dbname=''", ""}) {
    INFO(url);
    auto want = parsed(url);
    for (auto key : {"password", "sslpassword"})
      if (want.count(key))
        want[key] = "***";
    auto masked = ces::mask_database_url(url);
    INFO("masked: " << masked);
    CHECK(parsed(masked) == want);
    CHECK(masked.find("://") == url.find("://"));
  }
  CHECK(ces::mask_database_url("postgresql://u:pw@h:5432/db")
        == "postgresql://u:***@h:5432/db");
  CHECK(ces::mask_database_url("host=h password=pw user=u")
        == "user=u password=*** host=h");
}

TEST_CASE("database_url_problem never quotes the string", "[mask]") {
  using ces::database_url_problem;
  CHECK(database_url_problem("postgresql://u:pw@h/db").empty());
  CHECK(database_url_problem("host=h port=5432,,6000").empty());
  CHECK(database_url_problem("host=h dbname=a@b").empty()); // not a URI
  const std::string not_shown = " (the value is not shown: it may hold a "
                                "password)";
  // libpq's message with every quoted fragment replaced.
  CHECK(database_url_problem("postgresql://u:pa%zzss@h/db")
        == "not a libpq connection string: invalid percent-encoded token: "
           "\"***\""
             + not_shown);
  CHECK(database_url_problem("postgresql://u:pw@h/db?password=%00")
        == "not a libpq connection string: forbidden value %00 in "
           "percent-encoded value: \"***\""
             + not_shown);
  CHECK(database_url_problem("postgresql://u:pw@h/db?secret")
        == "not a libpq connection string: missing key/value separator "
           "\"=\" in URI query parameter: \"***\""
             + not_shown);
  CHECK(database_url_problem("postgresql://u:pw@h/db?password=a=b")
        == "not a libpq connection string: extra key/value separator \"=\" "
           "in URI query parameter: \"***\""
             + not_shown);
  CHECK(database_url_problem("host=h password=a b=c")
        == "not a libpq connection string: invalid connection option "
           "\"***\""
             + not_shown);
  CHECK(database_url_problem("host=h password='abc")
        == "not a libpq connection string: unterminated quoted string in "
           "connection info string"
             + not_shown);
  CHECK(database_url_problem("postgresql://u:pw@[]/db")
        == "not a libpq connection string: IPv6 host address may not be "
           "empty in URI: \"***\""
             + not_shown);
  CHECK(database_url_problem("postgresql://u:pw@[::1]x/db")
        == "not a libpq connection string: unexpected character \"***\" at "
           "position 24 in URI (expected \":\" or \"/\"): \"***\""
             + not_shown);
  // A fragment that looks like libpq's own "=" is still hidden.
  CHECK(database_url_problem("postgresql://u:pw@h/db?password=/\"%zz")
        == "not a libpq connection string: invalid percent-encoded token: "
           "\"***\""
             + not_shown);
  CHECK(database_url_problem("postgresq://u:pw@h/db")
        == "not a libpq connection string: missing \"=\" after \"***\" in "
           "connection info string (a URI starts with postgresql:// or "
           "postgres://)"
             + not_shown);
  // Parsed, but libpq would refuse the port when connecting (and quote it).
  for (auto url : {"postgresql://u:pw/x@h/db", "host=h port=5432x",
                   "host=h port=70000", "host=h,h2 port=1,0"})
    CHECK_THAT(database_url_problem(url),
               Catch::StartsWith("the port is not a number 1-65535"));
  // An '@' in a URI's host or database name: an unencoded '@' or '/' in
  // the password.
  CHECK_THAT(database_url_problem("postgresql://u:p@w@h/db"),
             Catch::StartsWith("the host name contains '@'"));
  CHECK_THAT(database_url_problem("postgresql://u:12/pw@h/db"),
             Catch::StartsWith("the database name contains '@'"));
}
