// The OpenAPI 3.1 document of the operator API (api/openapi.yaml), as the
// build turned it into JSON (api/openapi_to_cpp.py). GET /openapi.json
// answers it.
#pragma once

#include <string_view>

namespace ces::api {

/// The document as compact UTF-8 JSON.
std::string_view openapi_json() noexcept;

} // namespace ces::api
