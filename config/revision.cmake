# Writes OUT with `#define CES_REVISION "<rev>"`, only when it changes (so a
# build recompiles version.cpp alone, and only after a commit). REVISION, when
# given, wins (a build without .git: the Dockerfile passes it); else
# `git rev-parse --short=12 HEAD` of SOURCE_DIR, "-dirty" when tracked files
# differ; else "unknown".
if(NOT REVISION)
  execute_process(COMMAND git -C "${SOURCE_DIR}" rev-parse --short=12 HEAD
                  OUTPUT_VARIABLE REVISION RESULT_VARIABLE rc
                  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(NOT rc EQUAL 0 OR NOT REVISION)
    set(REVISION unknown)
  else()
    execute_process(COMMAND git -C "${SOURCE_DIR}" status --porcelain
                            --untracked-files=no
                    OUTPUT_VARIABLE changes RESULT_VARIABLE rc
                    OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(rc EQUAL 0 AND changes)
      set(REVISION "${REVISION}-dirty")
    endif()
  endif()
endif()
if(NOT REVISION MATCHES "^[A-Za-z0-9._-]+$")
  message(FATAL_ERROR "CES_REVISION must be [A-Za-z0-9._-]+: '${REVISION}'")
endif()
set(content "#define CES_REVISION \"${REVISION}\"\n")
set(old "")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL content)
  file(WRITE "${OUT}" "${content}")
endif()
