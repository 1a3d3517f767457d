// crm-produce: realistic CRM events (lead.created, job.created) and poison
// records into Kafka with a real librdkafka producer (idempotent, batched).
// Sample traffic for demos, load for tests and benchmarks. Run with --help.
//
// Every event is a pure function of (--seed, its sequence number), so two runs
// with the same options produce the same payloads. Each event is keyed by its
// lead/job id, so the partitioner spreads events over all partitions (without
// a key librdkafka's sticky partitioner piles them into one partition).
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace {

const char* const usage_text = R"(usage: crm-produce --bootstrap HOST:PORT[,...] [options]
  --topics a,b              topics (default apexflow.leads.created,apexflow.jobs.created);
                            events go round-robin over them; a topic whose name
                            contains "job" gets job.created events, others lead.created
  --count N                 events in total (default 1000; 0 = until SIGINT/SIGTERM)
  --rate EPS                events per second, steady pacing (default 0 = as fast as possible)
  --tenants N               tenant-01..tenant-N (default 20)
  --seed S                  payload seed (default 1)
  --start-index I           first sequence number (default 0), to continue a run
  --partitioner NAME        librdkafka partitioner for the event keys
                            (default murmur2_random; also consistent_random, fnv1a_random, random)
  --no-key                  produce without keys (sticky partitioning: uneven partitions)
  --poison-every K          every K-th event is a poison record, cycling through
                            invalid_json, missing_tenant, tenant_number, empty_value,
                            non_utf8, nul_escape, lone_surrogate, null_value
                            [, too_large with --oversize]
  --oversize                include the too_large kind (values of ~1.1 MiB)
  --header-tenant-every K   every K-th (non-poison) event carries its tenant only in a
                            `tenant_id` header, not in the payload (a valid event)
  --manifest PATH           after delivery: one line per delivered record,
                            topic<TAB>partition<TAB>offset<TAB>kind, kind = ok or the
                            error class (invalid_json, missing_tenant, empty_value, too_large)
  --manifest-variants       add a 5th column: the poison variant (e.g. non_utf8, header_tenant)
  --message-timeout-ms MS   librdkafka message.timeout.ms (default 300000)
  -X key=value              any librdkafka producer property (repeatable)
  --copy-file PATH          produce nothing: write the same events (same options,
                            same payloads) to PATH as PostgreSQL COPY text lines
                            tenant_id<TAB>topic<TAB>payload, for loading with
                            \copy t (tenant_id, topic, payload) from 'PATH';
                            only valid events (kind ok) are written, poison
                            records are left out; --bootstrap is not needed
  --quiet                   no progress lines, no librdkafka logs below errors
  --help
Prints one summary line on stdout. Exit status: 0 all delivered, 1 some delivery
failed, 2 usage error, 3 producer error (with --copy-file: cannot write PATH).
)";

// ---- deterministic randomness ---------------------------------------------

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

struct rng {
  uint64_t s;
  rng(uint64_t seed, uint64_t index) : s(seed * 0x2545F4914F6CDD1Dull ^ index) {
    splitmix64(s);
  }
  uint64_t next() {
    return splitmix64(s);
  }
  uint32_t below(uint32_t n) {
    return static_cast<uint32_t>(next() % n);
  }
  template <class T, size_t N>
  const T& pick(const T (&arr)[N]) {
    return arr[below(static_cast<uint32_t>(N))];
  }
};

const char* const first_names[] = {
  "Maria",  "James",  "Aisha",  "Chen",   "Olivia",  "Mateo", "Priya",
  "Liam",   "Sofia",  "Noah",   "Fatima", "Ethan",   "Yuki",  "Grace",
  "Diego",  "Hannah", "Omar",   "Chloe",  "Lucas",   "Amara", "Ivan",
  "Zoe",    "Kwame",  "Elena",  "Samuel", "Leila",   "Tomas", "Nora",
};
const char* const last_names[] = {
  "Okafor",  "Smith",    "Nguyen",  "Garcia",   "Kowalski", "Patel",
  "Johnson", "Haddad",   "Rossi",   "Andersen", "Kim",      "Martinez",
  "Brown",   "Tanaka",   "Dubois",  "Silva",    "Murphy",   "Schneider",
  "Lopez",   "Ivanova",  "Wright",  "Mensah",   "Novak",    "Fischer",
};
const char* const company_stems[] = {
  "Northwind", "Bluefin",   "Cedar Ridge", "Summit",   "Harbor",
  "Ironwood",  "Brightway", "Maple Leaf",  "Riverside", "Keystone",
  "Pinecrest", "Lakeshore", "Redstone",    "Silver Oak", "Evergreen",
};
const char* const company_trades[] = {
  "HVAC", "Plumbing", "Roofing", "Electric", "Landscaping",
  "Pest Control", "Cleaning", "Solar", "Pool Service", "Remodeling",
};
const char* const lead_sources[] = {
  "web_form", "google_ads", "referral", "facebook", "phone_call",
  "yelp", "angi", "email_campaign", "walk_in", "partner",
};
const char* const streets[] = {
  "Maple Ave", "Oak St", "Main St", "Pine Rd", "Cedar Ln", "Elm St",
  "Lakeview Dr", "Sunset Blvd", "Hillcrest Rd", "River Rd", "Park Ave",
};
struct city_t {
  const char* city;
  const char* state;
  const char* zip_prefix;
};
const city_t cities[] = {
  {"Columbus", "OH", "432"},   {"Austin", "TX", "787"},
  {"Denver", "CO", "802"},     {"Tampa", "FL", "336"},
  {"Portland", "OR", "972"},   {"Raleigh", "NC", "276"},
  {"Phoenix", "AZ", "850"},    {"Madison", "WI", "537"},
  {"Nashville", "TN", "372"},  {"Sacramento", "CA", "958"},
  {"Boise", "ID", "837"},      {"Richmond", "VA", "232"},
};
const char* const tags[] = {
  "residential", "commercial",  "hvac",       "plumbing",   "urgent",
  "spring-promo", "financing",  "repeat",     "vip",        "warranty",
  "estimate",    "maintenance", "new-build",  "emergency",  "seasonal",
};
struct service_t {
  const char* sku;
  const char* description;
  int64_t cents;
};
const service_t services[] = {
  {"SVC-101", "Diagnostic visit", 8900},
  {"SVC-120", "AC tune-up", 12900},
  {"SVC-145", "Furnace inspection", 11900},
  {"SVC-210", "Drain cleaning", 17500},
  {"SVC-305", "Water heater flush", 9900},
  {"PRT-220", "Capacitor 45/5 MFD", 8025},
  {"PRT-310", "Air filter MERV 11", 2450},
  {"PRT-415", "Thermostat, smart", 18900},
  {"LAB-001", "Labor, per hour", 9500},
  {"PRT-512", "PVC fittings kit", 3475},
};
const char* const job_titles[] = {
  "AC tune-up",           "Furnace repair",        "Water heater install",
  "Drain cleaning",       "Roof leak inspection",  "Panel upgrade",
  "Seasonal maintenance", "Thermostat replacement", "Pool pump service",
  "Gutter cleaning",
};

void append_hex(std::string& out, uint64_t v, int digits) {
  static const char hex[] = "0123456789abcdef";
  for (int i = digits - 1; i >= 0; --i)
    out += hex[(v >> (i * 4)) & 0xF];
}

void append_uuid(std::string& out, rng& r) {
  uint64_t a = r.next();
  uint64_t b = r.next();
  a = (a & ~0xF000ull) | 0x4000ull;                       // version 4
  b = (b & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull; // variant 10
  append_hex(out, a >> 32, 8);
  out += '-';
  append_hex(out, (a >> 16) & 0xFFFF, 4);
  out += '-';
  append_hex(out, a & 0xFFFF, 4);
  out += '-';
  append_hex(out, b >> 48, 4);
  out += '-';
  append_hex(out, b & 0xFFFFFFFFFFFFull, 12);
}

void append_int(std::string& out, long long v) {
  char buf[32];
  int n = std::snprintf(buf, sizeof(buf), "%lld", v);
  out.append(buf, static_cast<size_t>(n));
}

void append_money(std::string& out, int64_t cents) {
  char buf[40];
  int n = std::snprintf(buf, sizeof(buf), "%lld.%02lld",
                        static_cast<long long>(cents / 100),
                        static_cast<long long>(cents % 100));
  out.append(buf, static_cast<size_t>(n));
}

/// RFC 3339 UTC timestamp with milliseconds.
void append_time(std::string& out, int64_t epoch_ms) {
  time_t secs = static_cast<time_t>(epoch_ms / 1000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[40];
  int n = std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                        tm.tm_hour, tm.tm_min, tm.tm_sec,
                        static_cast<int>(epoch_ms % 1000));
  out.append(buf, static_cast<size_t>(n));
}

void append_lower_alnum(std::string& out, const char* s) {
  for (; *s; ++s) {
    unsigned char c = static_cast<unsigned char>(*s);
    if (std::isalnum(c))
      out += static_cast<char>(std::tolower(c));
    else if (c == ' ' && out.back() != '-')
      out += '-';
  }
}

// 2024-03-01T08:00:00Z: events are spread from there, ~250 ms apart.
constexpr int64_t base_epoch_ms = 1709280000000LL;

// ---- the event plan ---------------------------------------------------------

enum class variant : uint8_t {
  ok,
  header_tenant,
  invalid_json,
  missing_tenant,
  tenant_number,
  empty_value,
  non_utf8,
  nul_escape,
  lone_surrogate,
  null_value,
  too_large,
};

const char* variant_name(variant v) {
  switch (v) {
    case variant::ok:
      return "ok";
    case variant::header_tenant:
      return "header_tenant";
    case variant::invalid_json:
      return "invalid_json";
    case variant::missing_tenant:
      return "missing_tenant";
    case variant::tenant_number:
      return "tenant_number";
    case variant::empty_value:
      return "empty_value";
    case variant::non_utf8:
      return "non_utf8";
    case variant::nul_escape:
      return "nul_escape";
    case variant::lone_surrogate:
      return "lone_surrogate";
    case variant::null_value:
      return "null_value";
    case variant::too_large:
      return "too_large";
  }
  return "?";
}

/// The error class the sink must give the record (event_dlq.error_class), or
/// "ok" for a valid event.
const char* error_class(variant v) {
  switch (v) {
    case variant::ok:
    case variant::header_tenant:
      return "ok";
    case variant::invalid_json:
    case variant::non_utf8:
    case variant::nul_escape:
    case variant::lone_surrogate:
      return "invalid_json";
    case variant::missing_tenant:
    case variant::tenant_number:
      return "missing_tenant";
    case variant::empty_value:
    case variant::null_value:
      return "empty_value";
    case variant::too_large:
      return "too_large";
  }
  return "?";
}

const variant poison_cycle[] = {
  variant::invalid_json, variant::missing_tenant, variant::tenant_number,
  variant::empty_value,  variant::non_utf8,       variant::nul_escape,
  variant::lone_surrogate, variant::null_value,   variant::too_large,
};

struct options {
  std::string bootstrap;
  std::vector<std::string> topics{"apexflow.leads.created",
                                  "apexflow.jobs.created"};
  uint64_t count = 1000;
  double rate = 0;
  int tenants = 20;
  uint64_t seed = 1;
  uint64_t start_index = 0;
  std::string partitioner = "murmur2_random";
  bool no_key = false;
  uint64_t poison_every = 0;
  bool oversize = false;
  uint64_t header_tenant_every = 0;
  std::string manifest;
  bool manifest_variants = false;
  int message_timeout_ms = 300000;
  std::vector<std::pair<std::string, std::string>> extra;
  bool quiet = false;
  std::string copy_file;
};

variant plan(const options& o, uint64_t seq) {
  const uint64_t n = seq + 1; // 1-based: "every K-th"
  if (o.poison_every > 0 && n % o.poison_every == 0) {
    const size_t kinds = o.oversize ? 9 : 8;
    return poison_cycle[(n / o.poison_every - 1) % kinds];
  }
  if (o.header_tenant_every > 0 && n % o.header_tenant_every == 0)
    return variant::header_tenant;
  return variant::ok;
}

bool is_job_topic(const std::string& topic) {
  return topic.find("job") != std::string::npos;
}

struct event {
  std::string key;
  std::string value;
  bool null_value = false;
  std::string tenant; // for the header
  bool tenant_header = false;
};

/// Builds event `seq` for `topic` with the given variant.
void build_event(const options& o, uint64_t seq, const std::string& topic,
                 variant v, event& ev) {
  rng r{o.seed, seq};
  ev.key.clear();
  ev.value.clear();
  ev.null_value = false;
  ev.tenant_header = false;

  const bool job = is_job_topic(topic);
  const int tenant_no = 1 + static_cast<int>(r.below(
                              static_cast<uint32_t>(std::max(o.tenants, 1))));
  char tenant_buf[32];
  std::snprintf(tenant_buf, sizeof(tenant_buf), "tenant-%02d", tenant_no);
  ev.tenant = tenant_buf;
  const int64_t at_ms = base_epoch_ms + static_cast<int64_t>(seq) * 250
                        + r.below(250);

  std::string id = job ? "job_" : "lead_";
  append_hex(id, r.next(), 16);
  ev.key = id;

  std::string& s = ev.value;
  s.reserve(700);
  s += "{\"event_id\":\"";
  append_uuid(s, r);
  s += job ? "\",\"event_type\":\"job.created\"" : "\",\"event_type\":\"lead.created\"";
  switch (v) {
    case variant::missing_tenant:
    case variant::header_tenant:
      break;
    case variant::tenant_number:
      s += ",\"tenant_id\":";
      append_int(s, tenant_no);
      break;
    default:
      s += ",\"tenant_id\":\"";
      s += ev.tenant;
      s += '"';
  }
  s += ",\"occurred_at\":\"";
  append_time(s, at_ms);
  s += '"';

  const char* first = r.pick(first_names);
  const char* last = r.pick(last_names);
  if (!job) {
    const char* stem = r.pick(company_stems);
    const char* trade = r.pick(company_trades);
    const city_t& c = r.pick(cities);
    s += ",\"lead\":{\"id\":\"";
    s += id;
    s += "\",\"first_name\":\"";
    s += first;
    if (v == variant::non_utf8)
      s += "\xC3\x28\xFF"; // invalid UTF-8 sequence inside a string
    s += "\",\"last_name\":\"";
    s += last;
    s += "\",\"email\":\"";
    append_lower_alnum(s, first);
    s += '.';
    append_lower_alnum(s, last);
    s += '@';
    append_lower_alnum(s, stem);
    s += '-';
    append_lower_alnum(s, trade);
    s += ".com\",\"phone\":\"+1-555-";
    char phone[16];
    std::snprintf(phone, sizeof(phone), "%03u-%04u", 100 + r.below(900),
                  r.below(10000));
    s += phone;
    s += "\",\"company\":\"";
    s += stem;
    s += ' ';
    s += trade;
    s += "\",\"source\":\"";
    s += r.pick(lead_sources);
    s += "\",\"score\":";
    append_int(s, r.below(101));
    s += ",\"address\":{\"street\":\"";
    append_int(s, 100 + r.below(9900));
    s += ' ';
    s += r.pick(streets);
    s += "\",\"city\":\"";
    s += c.city;
    s += "\",\"state\":\"";
    s += c.state;
    s += "\",\"postal_code\":\"";
    s += c.zip_prefix;
    char zip[8];
    std::snprintf(zip, sizeof(zip), "%02u", r.below(100));
    s += zip;
    s += "\",\"country\":\"US\"},\"tags\":[";
    const uint32_t ntags = 1 + r.below(3);
    uint32_t t0 = r.below(static_cast<uint32_t>(std::size(tags)));
    for (uint32_t k = 0; k < ntags; ++k) {
      if (k)
        s += ',';
      s += '"';
      s += tags[(t0 + k * 5) % std::size(tags)];
      s += '"';
    }
    s += "]}";
  } else {
    s += ",\"job\":{\"id\":\"";
    s += id;
    s += "\",\"title\":\"";
    s += r.pick(job_titles);
    if (v == variant::non_utf8)
      s += "\xC3\x28\xFF";
    s += "\",\"customer\":{\"id\":\"cust_";
    append_hex(s, r.next(), 12);
    s += "\",\"name\":\"";
    s += first;
    s += ' ';
    s += last;
    s += "\"},\"scheduled_at\":\"";
    append_time(s, at_ms + (1 + r.below(14)) * 86400000LL
                     + r.below(10) * 3600000LL);
    s += "\",\"status\":\"scheduled\",\"currency\":\"USD\",\"line_items\":[";
    const uint32_t nitems = 1 + r.below(2);
    const uint32_t first_item = r.below(static_cast<uint32_t>(std::size(services)));
    int64_t total = 0;
    for (uint32_t k = 0; k < nitems; ++k) {
      const service_t& sv = services[(first_item + 3 * k) % std::size(services)];
      const int qty = 1 + static_cast<int>(r.below(3));
      total += sv.cents * qty;
      if (k)
        s += ',';
      s += "{\"sku\":\"";
      s += sv.sku;
      s += "\",\"description\":\"";
      s += sv.description;
      s += "\",\"quantity\":";
      append_int(s, qty);
      s += ",\"unit_price\":";
      append_money(s, sv.cents);
      s += '}';
    }
    s += "],\"price\":";
    append_money(s, total);
    s += '}';
  }
  if (v == variant::nul_escape)
    s += ",\"notes\":\"call after 5pm\\u0000ignored\"";
  if (v == variant::lone_surrogate)
    s += ",\"notes\":\"smile \\ud83d please\"";
  if (v == variant::too_large) {
    // A valid event that is too large: > 1 MiB of notes.
    s += ",\"attachment_base64\":\"";
    const size_t target = 1100 * 1024;
    static const char b64[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    s.reserve(target + 1024);
    while (s.size() < target)
      s += b64[r.below(64)];
    s += '"';
  }
  s += ",\"metadata\":{\"sequence\":";
  append_int(s, static_cast<long long>(seq));
  s += "}}";

  switch (v) {
    case variant::invalid_json:
      // Cut in the middle: unterminated object/string.
      s.resize(s.size() / 2);
      break;
    case variant::empty_value:
      s.clear();
      break;
    case variant::null_value:
      s.clear();
      ev.null_value = true;
      break;
    case variant::header_tenant:
      ev.tenant_header = true;
      break;
    default:
      break;
  }
}

// ---- producer ---------------------------------------------------------------

std::atomic<int> g_signals{0};

void on_signal(int) {
  g_signals.fetch_add(1);
}

struct delivery_state {
  const options* opts = nullptr;
  FILE* manifest = nullptr;
  uint64_t delivered = 0;
  uint64_t failed = 0;
  std::map<std::string, uint64_t> per_topic; // delivered per topic
  std::map<std::string, uint64_t> errors;    // failures per error name
  std::map<std::string, uint64_t> kinds;     // delivered per manifest kind
  std::string first_error;
};

void dr_msg_cb(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
  auto* st = static_cast<delivery_state*>(opaque);
  const uint64_t seq = reinterpret_cast<uintptr_t>(m->_private);
  if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    ++st->failed;
    ++st->errors[rd_kafka_err2name(m->err)];
    if (st->first_error.empty())
      st->first_error = std::string(rd_kafka_topic_name(m->rkt)) + ": "
                        + rd_kafka_err2str(m->err);
    return;
  }
  ++st->delivered;
  const char* topic = rd_kafka_topic_name(m->rkt);
  ++st->per_topic[topic];
  const variant v = plan(*st->opts, seq);
  ++st->kinds[error_class(v)];
  if (st->manifest != nullptr) {
    if (st->opts->manifest_variants)
      std::fprintf(st->manifest, "%s\t%d\t%lld\t%s\t%s\n", topic,
                   static_cast<int>(m->partition),
                   static_cast<long long>(m->offset), error_class(v),
                   variant_name(v));
    else
      std::fprintf(st->manifest, "%s\t%d\t%lld\t%s\n", topic,
                   static_cast<int>(m->partition),
                   static_cast<long long>(m->offset), error_class(v));
  }
}

void quiet_log_cb(const rd_kafka_t*, int level, const char* fac,
                  const char* buf) {
  if (level <= 3)
    std::fprintf(stderr, "%%%d|%s| %s\n", level, fac, buf);
}

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "crm-produce: %s\n%s", msg.c_str(), usage_text);
  std::exit(2);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string::npos)
      end = s.size();
    if (end > start)
      out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

uint64_t parse_u64(const std::string& name, const std::string& v) {
  errno = 0;
  char* end = nullptr;
  unsigned long long n = std::strtoull(v.c_str(), &end, 10);
  if (v.empty() || v[0] == '-' || errno != 0 || *end != '\0')
    usage_error(name + " needs a non-negative integer, got '" + v + "'");
  return n;
}

options parse_cli(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string inline_value;
    bool has_inline = false;
    if (a.rfind("--", 0) == 0) {
      auto eq = a.find('=');
      if (eq != std::string::npos) {
        inline_value = a.substr(eq + 1);
        a = a.substr(0, eq);
        has_inline = true;
      }
    }
    auto value = [&]() -> std::string {
      if (has_inline)
        return inline_value;
      if (i + 1 >= argc)
        usage_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(usage_text, stdout);
      std::exit(0);
    } else if (a == "--bootstrap" || a == "-b") {
      o.bootstrap = value();
    } else if (a == "--topics" || a == "-t") {
      o.topics = split(value(), ',');
      if (o.topics.empty())
        usage_error("--topics needs at least one topic");
    } else if (a == "--count" || a == "-n") {
      o.count = parse_u64(a, value());
    } else if (a == "--rate") {
      std::string v = value();
      char* end = nullptr;
      o.rate = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || o.rate < 0)
        usage_error("--rate needs a non-negative number");
    } else if (a == "--tenants") {
      o.tenants = static_cast<int>(parse_u64(a, value()));
      if (o.tenants < 1 || o.tenants > 100000)
        usage_error("--tenants must be 1..100000");
    } else if (a == "--seed") {
      o.seed = parse_u64(a, value());
    } else if (a == "--start-index") {
      o.start_index = parse_u64(a, value());
    } else if (a == "--partitioner") {
      o.partitioner = value();
    } else if (a == "--no-key") {
      o.no_key = true;
    } else if (a == "--poison-every") {
      o.poison_every = parse_u64(a, value());
    } else if (a == "--oversize") {
      o.oversize = true;
    } else if (a == "--header-tenant-every") {
      o.header_tenant_every = parse_u64(a, value());
    } else if (a == "--manifest") {
      o.manifest = value();
    } else if (a == "--manifest-variants") {
      o.manifest_variants = true;
    } else if (a == "--message-timeout-ms") {
      o.message_timeout_ms = static_cast<int>(parse_u64(a, value()));
    } else if (a == "-X") {
      std::string kv = value();
      auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0)
        usage_error("-X needs key=value");
      o.extra.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
    } else if (a == "--quiet" || a == "-q") {
      o.quiet = true;
    } else if (a == "--copy-file") {
      o.copy_file = value();
      if (o.copy_file.empty())
        usage_error("--copy-file needs a path");
    } else {
      usage_error("unknown option " + a);
    }
  }
  if (o.bootstrap.empty() && o.copy_file.empty())
    usage_error("--bootstrap is required");
  if (o.count == 0 && !o.copy_file.empty())
    usage_error("--copy-file needs a --count above 0");
  return o;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
    .count();
}

/// Appends `s` as one field of PostgreSQL's COPY text format.
void append_copy_field(std::string& out, const std::string& s) {
  for (char c : s) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out += c;
    }
  }
}

/// --copy-file: the events crm-produce would send, as COPY text lines.
int write_copy_file(const options& o) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string tmp = o.copy_file + ".tmp." + std::to_string(::getpid());
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) {
    std::fprintf(stderr, "crm-produce: cannot open %s: %s\n", tmp.c_str(),
                 std::strerror(errno));
    return 3;
  }
  uint64_t written = 0;
  uint64_t left_out = 0;
  uint64_t bytes = 0;
  event ev;
  std::string line;
  bool ok = true;
  for (uint64_t k = 0; k < o.count && ok; ++k) {
    const uint64_t seq = o.start_index + k;
    const size_t ti = seq % o.topics.size();
    const variant v = plan(o, seq);
    if (std::strcmp(error_class(v), "ok") != 0) {
      ++left_out;
      continue;
    }
    build_event(o, seq, o.topics[ti], v, ev);
    line.clear();
    append_copy_field(line, ev.tenant);
    line += '\t';
    append_copy_field(line, o.topics[ti]);
    line += '\t';
    append_copy_field(line, ev.value);
    line += '\n';
    ok = std::fwrite(line.data(), 1, line.size(), f) == line.size();
    bytes += ev.value.size();
    ++written;
  }
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), o.copy_file.c_str()) != 0) {
    std::fprintf(stderr, "crm-produce: cannot write %s: %s\n",
                 o.copy_file.c_str(), std::strerror(errno));
    std::remove(tmp.c_str());
    return 3;
  }
  std::printf("crm-produce: copy-file=%s rows=%llu left_out=%llu "
              "payload_bytes=%llu avg_payload=%.0f elapsed=%.3fs\n",
              o.copy_file.c_str(), static_cast<unsigned long long>(written),
              static_cast<unsigned long long>(left_out),
              static_cast<unsigned long long>(bytes),
              written > 0 ? static_cast<double>(bytes) / written : 0.0,
              seconds_since(t0));
  std::fflush(stdout);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  options o = parse_cli(argc, argv);
  if (!o.copy_file.empty())
    return write_copy_file(o);

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  delivery_state st;
  st.opts = &o;
  std::string manifest_tmp;
  if (!o.manifest.empty()) {
    manifest_tmp = o.manifest + ".tmp." + std::to_string(::getpid());
    st.manifest = std::fopen(manifest_tmp.c_str(), "w");
    if (st.manifest == nullptr) {
      std::fprintf(stderr, "crm-produce: cannot open %s: %s\n",
                   manifest_tmp.c_str(), std::strerror(errno));
      return 3;
    }
  }

  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  std::vector<std::pair<std::string, std::string>> props = {
    {"bootstrap.servers", o.bootstrap},
    {"client.id", "crm-produce"},
    {"enable.idempotence", "true"},
    {"linger.ms", "5"},
    {"batch.num.messages", "10000"},
    {"batch.size", "1000000"},
    {"queue.buffering.max.messages", "1000000"},
    {"queue.buffering.max.kbytes", "1048576"},
    {"partitioner", o.partitioner},
    {"message.timeout.ms", std::to_string(o.message_timeout_ms)},
  };
  if (o.oversize)
    props.emplace_back("message.max.bytes", std::to_string(4 * 1024 * 1024));
  for (auto& kv : o.extra)
    props.push_back(kv);
  for (auto& [k, v] : props) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr))
        != RD_KAFKA_CONF_OK) {
      std::fprintf(stderr, "crm-produce: %s=%s: %s\n", k.c_str(), v.c_str(),
                   errstr);
      rd_kafka_conf_destroy(conf);
      return 2;
    }
  }
  rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
  rd_kafka_conf_set_opaque(conf, &st);
  if (o.quiet)
    rd_kafka_conf_set_log_cb(conf, quiet_log_cb);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr,
                                sizeof(errstr));
  if (rk == nullptr) {
    std::fprintf(stderr, "crm-produce: cannot create producer: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    return 3;
  }

  std::vector<rd_kafka_topic_t*> rkts;
  for (const auto& t : o.topics)
    rkts.push_back(rd_kafka_topic_new(rk, t.c_str(), nullptr));

  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  auto last_progress = t0;
  uint64_t produced = 0;
  uint64_t poison = 0;
  uint64_t header_tenant = 0;
  int rc = 0;
  event ev;

  for (uint64_t k = 0; o.count == 0 || k < o.count; ++k) {
    if (g_signals.load() > 0)
      break;
    const uint64_t seq = o.start_index + k;
    if (o.rate > 0) {
      // Steady pacing: event k is due at t0 + k / rate.
      const auto due = t0 + std::chrono::duration_cast<clock::duration>(
                              std::chrono::duration<double>(k / o.rate));
      for (;;) {
        auto now = clock::now();
        if (now >= due || g_signals.load() > 0)
          break;
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    due - now)
                    .count();
        if (ms >= 1)
          rd_kafka_poll(rk, static_cast<int>(std::min<long long>(ms, 100)));
        else
          std::this_thread::sleep_until(due);
      }
      if (g_signals.load() > 0)
        break;
    }
    const size_t ti = seq % o.topics.size();
    const variant v = plan(o, seq);
    build_event(o, seq, o.topics[ti], v, ev);
    if (v == variant::header_tenant)
      ++header_tenant;
    else if (v != variant::ok)
      ++poison;

    rd_kafka_headers_t* hdrs = nullptr;
    if (ev.tenant_header) {
      hdrs = rd_kafka_headers_new(1);
      rd_kafka_header_add(hdrs, "tenant_id", -1, ev.tenant.data(),
                          static_cast<ssize_t>(ev.tenant.size()));
    }
    // A zero-length value must be a non-NULL pointer, else it is a null value.
    static const char empty_byte = 0;
    const void* payload = ev.null_value ? nullptr
                          : ev.value.empty()
                            ? static_cast<const void*>(&empty_byte)
                            : ev.value.data();
    for (;;) {
      rd_kafka_resp_err_t err;
      if (hdrs != nullptr) {
        err = rd_kafka_producev(
          rk, RD_KAFKA_V_RKT(rkts[ti]),
          RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_VALUE(const_cast<void*>(payload), ev.value.size()),
          RD_KAFKA_V_KEY(o.no_key ? nullptr : ev.key.data(),
                         o.no_key ? 0 : ev.key.size()),
          RD_KAFKA_V_HEADERS(hdrs),
          RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(
            static_cast<uintptr_t>(seq))),
          RD_KAFKA_V_END);
      } else {
        err = rd_kafka_producev(
          rk, RD_KAFKA_V_RKT(rkts[ti]),
          RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_VALUE(const_cast<void*>(payload), ev.value.size()),
          RD_KAFKA_V_KEY(o.no_key ? nullptr : ev.key.data(),
                         o.no_key ? 0 : ev.key.size()),
          RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(
            static_cast<uintptr_t>(seq))),
          RD_KAFKA_V_END);
      }
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        hdrs = nullptr; // owned by the message now
        break;
      }
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && g_signals.load() == 0) {
        rd_kafka_poll(rk, 10);
        continue;
      }
      if (hdrs != nullptr)
        rd_kafka_headers_destroy(hdrs);
      std::fprintf(stderr, "crm-produce: produce to %s failed: %s\n",
                   o.topics[ti].c_str(), rd_kafka_err2str(err));
      ++st.failed;
      ++st.errors[rd_kafka_err2name(err)];
      rc = 1;
      break;
    }
    if (rc != 0)
      break;
    ++produced;
    if ((produced & 1023) == 0)
      rd_kafka_poll(rk, 0);
    if (!o.quiet && (produced & 1023) == 0) {
      auto now = clock::now();
      if (now - last_progress >= std::chrono::seconds(5)) {
        last_progress = now;
        std::fprintf(stderr, "crm-produce: produced=%llu delivered=%llu "
                             "failed=%llu in flight=%d\n",
                     static_cast<unsigned long long>(produced),
                     static_cast<unsigned long long>(st.delivered),
                     static_cast<unsigned long long>(st.failed),
                     rd_kafka_outq_len(rk));
      }
    }
  }

  // Wait for every delivery report (each message is either delivered or
  // fails after message.timeout.ms). A second signal gives up and purges.
  const int signals_at_flush = g_signals.load();
  while (rd_kafka_outq_len(rk) > 0) {
    rd_kafka_flush(rk, 100);
    if (g_signals.load() > signals_at_flush) {
      std::fprintf(stderr, "crm-produce: interrupted while flushing, purging "
                           "%d undelivered message(s)\n",
                   rd_kafka_outq_len(rk));
      rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
      rd_kafka_flush(rk, 5000);
      break;
    }
  }
  rd_kafka_poll(rk, 0);
  const double elapsed = seconds_since(t0);

  if (st.manifest != nullptr) {
    bool ok = std::fclose(st.manifest) == 0;
    st.manifest = nullptr;
    if (!ok || std::rename(manifest_tmp.c_str(), o.manifest.c_str()) != 0) {
      std::fprintf(stderr, "crm-produce: cannot write manifest %s: %s\n",
                   o.manifest.c_str(), std::strerror(errno));
      rc = 3;
    }
  }

  for (auto* t : rkts)
    rd_kafka_topic_destroy(t);
  rd_kafka_destroy(rk);

  std::string topics_txt;
  for (const auto& t : o.topics) {
    if (!topics_txt.empty())
      topics_txt += ',';
    auto it = st.per_topic.find(t);
    topics_txt += t + ":" + std::to_string(it == st.per_topic.end() ? 0
                                                                     : it->second);
  }
  std::string kinds_txt;
  for (const auto& [k, n] : st.kinds) {
    if (!kinds_txt.empty())
      kinds_txt += ',';
    kinds_txt += k + ":" + std::to_string(n);
  }
  std::string errors_txt;
  for (const auto& [k, n] : st.errors) {
    if (!errors_txt.empty())
      errors_txt += ',';
    errors_txt += k + ":" + std::to_string(n);
  }
  const uint64_t lost = produced > st.delivered + st.failed
                          ? produced - st.delivered - st.failed
                          : 0;
  std::printf("crm-produce: produced=%llu delivered=%llu failed=%llu "
              "topics=%s kinds=%s poison=%llu header_tenant=%llu "
              "elapsed=%.3fs rate=%.0f/s%s%s\n",
              static_cast<unsigned long long>(produced),
              static_cast<unsigned long long>(st.delivered),
              static_cast<unsigned long long>(st.failed + lost),
              topics_txt.c_str(), kinds_txt.empty() ? "-" : kinds_txt.c_str(),
              static_cast<unsigned long long>(poison),
              static_cast<unsigned long long>(header_tenant), elapsed,
              elapsed > 0 ? static_cast<double>(st.delivered) / elapsed : 0.0,
              errors_txt.empty() ? "" : " errors=", errors_txt.c_str());
  std::fflush(stdout);
  if (!st.first_error.empty())
    std::fprintf(stderr, "crm-produce: first delivery error: %s\n",
                 st.first_error.c_str());
  if (st.failed > 0 || lost > 0)
    rc = rc == 0 ? 1 : rc;
  return rc;
}
