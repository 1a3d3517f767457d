// Where the JWKS comes from: a file, or an HTTPS GET with libcurl. See
// api/jwt.hpp.
#include "api/jwt.hpp"

#include <curl/curl.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>

namespace ces::auth {

namespace {

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size())
    return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i])
      return false;
  return true;
}

void set_error(std::string* error, std::string why) {
  if (error)
    *error = std::move(why);
}

struct body_sink {
  std::string data;
  bool too_large = false;
};

size_t on_body(char* ptr, size_t size, size_t n, void* user) {
  auto* sink = static_cast<body_sink*>(user);
  auto len = size * n;
  if (sink->data.size() + len > jwks::max_document_bytes) {
    sink->too_large = true;
    return 0; // aborts the transfer: CURLE_WRITE_ERROR
  }
  sink->data.append(ptr, len);
  return len;
}

struct curl_deleter {
  void operator()(CURL* c) const noexcept {
    curl_easy_cleanup(c);
  }
  void operator()(curl_slist* l) const noexcept {
    curl_slist_free_all(l);
  }
};

std::optional<std::string> https_get(const std::string& url,
                                     const std::string& ca_file,
                                     std::string* error) {
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  std::unique_ptr<CURL, curl_deleter> curl{curl_easy_init()};
  if (!curl) {
    set_error(error, "JWKS fetch: curl_easy_init failed");
    return std::nullopt;
  }
  std::unique_ptr<curl_slist, curl_deleter> headers{curl_slist_append(
    nullptr, "Accept: application/jwk-set+json, application/json")};
  body_sink sink;
  char errbuf[CURL_ERROR_SIZE] = {0};
  auto* c = curl.get();
  bool ok = true;
  auto set = [&ok](CURLcode rc) { ok = ok && rc == CURLE_OK; };
  set(curl_easy_setopt(c, CURLOPT_URL, url.c_str()));
  // https only, also after a redirect.
  set(curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https"));
  set(curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https"));
  set(curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L));
  set(curl_easy_setopt(c, CURLOPT_MAXREDIRS, 3L));
  set(curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L));
  set(curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L));
  set(curl_easy_setopt(c, CURLOPT_SSLVERSION,
                       static_cast<long>(CURL_SSLVERSION_TLSv1_2)));
  if (!ca_file.empty()) {
    // Only this bundle, not the system's CA directory as well.
    set(curl_easy_setopt(c, CURLOPT_CAINFO, ca_file.c_str()));
    set(curl_easy_setopt(c, CURLOPT_CAPATH, nullptr));
  }
  set(curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 3000L));
  set(curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L));
  set(curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L));
  set(curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE,
                       static_cast<curl_off_t>(jwks::max_document_bytes)));
  set(curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &on_body));
  set(curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink));
  set(curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf));
  set(curl_easy_setopt(c, CURLOPT_USERAGENT, "crm-events-sink"));
  set(curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get()));
  if (!ok) {
    set_error(error, "JWKS fetch: libcurl refused an option");
    return std::nullopt;
  }
  auto rc = curl_easy_perform(c);
  if (sink.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
    set_error(error, "JWKS fetch: body larger than "
                       + std::to_string(jwks::max_document_bytes) + " bytes");
    return std::nullopt;
  }
  if (rc != CURLE_OK) {
    // errbuf names the problem (certificate, host, timeout), never the
    // URL's path, query or user info.
    std::string why = "JWKS fetch failed: ";
    why += curl_easy_strerror(rc);
    if (errbuf[0] != '\0') {
      why += ": ";
      why += errbuf;
    }
    set_error(error, std::move(why));
    return std::nullopt;
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) {
    set_error(error, "JWKS fetch: HTTP status " + std::to_string(status));
    return std::nullopt;
  }
  return std::move(sink.data);
}

std::optional<std::string> read_file(const std::string& path,
                                     std::string* error) {
  std::unique_ptr<FILE, int (*)(FILE*)> f{std::fopen(path.c_str(), "rb"),
                                          &std::fclose};
  if (!f) {
    set_error(error, "cannot open JWKS file " + path + ": "
                       + std::strerror(errno));
    return std::nullopt;
  }
  std::string data;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) {
    data.append(buf, n);
    if (data.size() > jwks::max_document_bytes) {
      set_error(error, "JWKS file " + path + " is larger than "
                         + std::to_string(jwks::max_document_bytes)
                         + " bytes");
      return std::nullopt;
    }
  }
  if (std::ferror(f.get())) {
    set_error(error, "cannot read JWKS file " + path);
    return std::nullopt;
  }
  return data;
}

} // namespace

jwks_source::jwks_source(std::string location, std::string ca_file,
                         std::chrono::seconds min_refresh)
  : location_(std::move(location)),
    ca_file_(std::move(ca_file)),
    min_refresh_(min_refresh) {
}

bool jwks_source::is_url() const noexcept {
  return location_.find("://") != std::string::npos;
}

std::optional<std::string> jwks_source::read(std::string* error) const {
  if (!is_url())
    return read_file(location_, error);
  if (!starts_with_nocase(location_, "https://")) {
    set_error(error, "JWKS location must be a file path or an https:// URL");
    return std::nullopt;
  }
  return https_get(location_, ca_file_, error);
}

std::optional<jwks> jwks_source::fetch(std::string* error) {
  last_attempt_ = clock::now();
  auto text = read(error);
  if (!text)
    return std::nullopt;
  return jwks::parse(*text, error);
}

bool jwks_source::may_refresh(clock::time_point now) const noexcept {
  return !last_attempt_ || now - *last_attempt_ >= min_refresh_;
}

} // namespace ces::auth
