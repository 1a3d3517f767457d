// The service's version (CMake's project version) and the git revision it
// was built from (config/revision.cmake: `git rev-parse`, or the CES_REVISION
// CMake variable where there is no .git, e.g. in the container build; else
// "unknown"). No CAF.
#pragma once

namespace ces {

/// "0.1.0".
const char* version() noexcept;

/// The short git commit ("1a2b3c4d5e6f", "-dirty" appended when the work
/// tree had uncommitted changes), or "unknown".
const char* revision() noexcept;

} // namespace ces
