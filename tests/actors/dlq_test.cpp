#include "actors/dlq.hpp"
#include "fixture.hpp"

#include <catch2/catch.hpp>

using namespace std::chrono_literals;
using namespace ces;

namespace {

/// Remembers the scope of every read (and the filter, limit and cursor of
/// finds, the id of gets); answers one row per tenant it sees among "a",
/// "b" and unknown.
struct seen_scopes {
  std::vector<tenant_scope> scopes;
  std::vector<dlq_filter> filters;
  std::vector<std::pair<int32_t, int64_t>> pages; // limit, before_id
  std::vector<int64_t> ids;
};

class scoped_reader : public dlq_reader {
public:
  explicit scoped_reader(std::shared_ptr<seen_scopes> s) : s_(std::move(s)) {
  }
  int64_t pending_count() override {
    return 3;
  }
  std::vector<storage::dlq_entry_row>
  latest(int32_t limit, const tenant_scope& scope) override {
    s_->scopes.push_back(scope);
    std::vector<storage::dlq_entry_row> out;
    for (std::string t : {"a", "b", ""})
      if (scope.sees(t) && static_cast<int32_t>(out.size()) < limit) {
        storage::dlq_entry_row d;
        d.tenant_id = t;
        out.push_back(d);
      }
    return out;
  }
  std::vector<storage::dlq_entry_row>
  find(const dlq_filter& f, const tenant_scope& scope, int32_t limit,
       int64_t before_id) override {
    s_->filters.push_back(f);
    s_->pages.emplace_back(limit, before_id);
    return latest(limit, scope);
  }
  std::vector<storage::dlq_entry_row>
  get(int64_t id, const tenant_scope& scope) override {
    s_->scopes.push_back(scope);
    s_->ids.push_back(id);
    std::vector<storage::dlq_entry_row> out;
    if (id == 5 && scope.sees("a")) {
      storage::dlq_entry_row d;
      d.id = 5;
      d.tenant_id = "a";
      out.push_back(d);
    }
    return out;
  }

private:
  std::shared_ptr<seen_scopes> s_;
};

} // namespace

TEST_CASE_METHOD(ces::test::fixture,
                 "DLQ: latest passes the requester's tenant scope on") {
  auto seen = std::make_shared<seen_scopes>();
  auto d = sys.spawn(
    dlq,
    dlq_reader_factory{[seen] {
      return std::unique_ptr<dlq_reader>(new scoped_reader(seen));
    }},
    std::chrono::milliseconds{60000}, nullptr);
  sched.run();
  auto ask = [&](const tenant_scope& scope) {
    std::vector<std::string> tenants;
    auto h = self->request(d, caf::infinite, atom::latest_v, int32_t{10},
                           scope);
    sched.run();
    h.receive(
      [&](std::vector<storage::dlq_entry_row>& xs) {
        for (auto& x : xs)
          tenants.push_back(x.tenant_id);
      },
      [&](caf::error& e) { FAIL(to_string(e)); });
    return tenants;
  };
  tenant_scope a;
  a.tenants = {"a"};
  CHECK(ask(a) == std::vector<std::string>{"a"});
  tenant_scope admin;
  admin.all = true;
  admin.unknown_tenant = true;
  CHECK(ask(admin) == std::vector<std::string>{"a", "b", ""});
  REQUIRE(seen->scopes.size() == 2);
  CHECK(seen->scopes[0].tenants == std::vector<std::string>{"a"});
  CHECK_FALSE(seen->scopes[0].all);
  CHECK_FALSE(seen->scopes[0].unknown_tenant);
  CHECK(seen->scopes[1].all);
  CHECK(seen->scopes[1].unknown_tenant);
  // Ends its refresh loop (else the fixture waits for it).
  self->send_exit(d, caf::exit_reason::kill);
  sched.run();
}

TEST_CASE_METHOD(ces::test::fixture,
                 "DLQ: find and get pass filter, cursor and scope on") {
  auto seen = std::make_shared<seen_scopes>();
  auto d = sys.spawn(
    dlq,
    dlq_reader_factory{[seen] {
      return std::unique_ptr<dlq_reader>(new scoped_reader(seen));
    }},
    std::chrono::milliseconds{60000}, nullptr);
  sched.run();
  auto rows = [&](auto h) {
    std::vector<std::string> tenants;
    sched.run();
    h.receive(
      [&](std::vector<storage::dlq_entry_row>& xs) {
        for (auto& x : xs)
          tenants.push_back(x.tenant_id);
      },
      [&](caf::error& e) { FAIL(to_string(e)); });
    return tenants;
  };
  tenant_scope b;
  b.tenants = {"b"};
  dlq_filter f;
  f.status = "pending";
  f.topic = "crm";
  CHECK(rows(self->request(d, caf::infinite, atom::find_v, f, b,
                           int32_t{7}, int64_t{42}))
        == std::vector<std::string>{"b"});
  REQUIRE(seen->filters.size() == 1);
  CHECK(seen->filters[0].status == "pending");
  CHECK(seen->filters[0].topic == "crm");
  CHECK(seen->pages[0] == std::pair<int32_t, int64_t>{7, 42});
  CHECK(seen->scopes.back().tenants == std::vector<std::string>{"b"});
  tenant_scope a;
  a.tenants = {"a"};
  CHECK(rows(self->request(d, caf::infinite, atom::get_v, int64_t{5}, a))
        == std::vector<std::string>{"a"});
  CHECK(rows(self->request(d, caf::infinite, atom::get_v, int64_t{5}, b))
        .empty());
  CHECK(seen->ids == std::vector<int64_t>{5, 5});
  self->send_exit(d, caf::exit_reason::kill);
  sched.run();
}
