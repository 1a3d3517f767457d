// The numbered migrations of sql/, embedded in the binary at build time
// (storage/CMakeLists.txt generates their definition), so that the service
// needs no sql/ directory at run time.
#pragma once

#include <vector>

namespace ces::storage {

/// One sql/NNNN_name.sql file.
struct migration {
  int version;      // NNNN
  const char* name; // file name, e.g. "0001_initial.sql"
  const char* sql;  // its text
};

/// All migrations, in ascending version order.
const std::vector<migration>& embedded_migrations();

} // namespace ces::storage
