#include "storage/validate.hpp"
// Implementation pending (validation helper).
