#!/bin/sh
# Builds this connector into target/FOLDER.wasm (FOLDER: this folder's name,
# __NAME__ as weft new wrote it) with weft's Python SDK and its build script,
# connectors/sdk-python/componentize.sh: componentize-py snapshots CPython
# with app.py, logic.py and the SDK into a component of the world named on
# app.py's first line. The componentize-py is $COMPONENTIZE_PY when set, else
# the one `make guests-python` installs in weft's checkout (pinned) when the
# SDK is a checkout's, else the one on PATH.
#
#   sh build.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
sdk="__SDK_DIR__"
cpy=${COMPONENTIZE_PY:-}
if [ -z "$cpy" ]; then
    if [ -x "$sdk/../../.venv/bin/componentize-py" ]; then
        cpy="$sdk/../../.venv/bin/componentize-py"
    elif command -v componentize-py >/dev/null 2>&1; then
        cpy=componentize-py
    else
        echo "no componentize-py: run \`make guests-python\` in weft's checkout, or pip install componentize-py==0.25.1 and set COMPONENTIZE_PY" >&2
        exit 1
    fi
fi
sh "$sdk/componentize.sh" "$cpy" "$here/target" "$here/app.py"
echo "$here/target/$(basename "$here").wasm"
