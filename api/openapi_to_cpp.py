#!/usr/bin/python3
"""Turns api/openapi.yaml into a C++ source whose ces::api::openapi_json()
returns the document as compact JSON (the build runs it; see
api/CMakeLists.txt). Usage: openapi_to_cpp.py IN.yaml OUT.cpp"""
import json
import sys

import yaml


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    if not isinstance(doc, dict) or "openapi" not in doc:
        sys.exit(f"{src}: not an OpenAPI document")
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    delim = "ces_openapi"
    if ")" + delim + '"' in text:
        sys.exit(f"{src}: the document contains the literal's delimiter")
    # One raw literal per 16 KiB piece: compilers bound a single literal.
    pieces = [text[i:i + 16384] for i in range(0, len(text), 16384)]
    body = "\n".join(f'  R"{delim}({p}){delim}"' for p in pieces)
    out = (
        "// Generated from api/openapi.yaml by api/openapi_to_cpp.py: do not"
        " edit.\n"
        '#include "api/openapi.hpp"\n\n'
        "namespace ces::api {\n\n"
        "std::string_view openapi_json() noexcept {\n"
        "  static constexpr char text[] =\n"
        f"{body};\n"
        "  return {text, sizeof(text) - 1};\n"
        "}\n\n"
        "} // namespace ces::api\n"
    )
    with open(dst, "w", encoding="utf-8") as f:
        f.write(out)


if __name__ == "__main__":
    main()
