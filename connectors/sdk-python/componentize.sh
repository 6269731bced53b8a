#!/bin/sh
# Builds Python connectors into components with componentize-py (what
# `make guests-python` runs). Each DIR/app.py given names its world on a
# line `# world: WORLD` (source-connector, mapper-connector or
# destination-connector) and becomes OUT_DIR/DIR-NAME.wasm, with DIR and
# this SDK on the Python path; a component newer than every .py of its
# folder and of the SDK, the WIT and componentize-py itself is kept.
#
#   sh connectors/sdk-python/componentize.sh COMPONENTIZE_PY OUT_DIR DIR/app.py...
set -eu
cpy=$1
out=$2
shift 2
sdk=$(cd "$(dirname "$0")" && pwd)
# The WIT inside the SDK (as `weft sdk path` writes it), else the checkout's.
if [ -d "$sdk/wit/v0.1.0" ]; then
    wit=$(cd "$sdk/wit/v0.1.0" && pwd)
else
    wit=$(cd "$sdk/../../wit/v0.1.0" && pwd)
fi
mkdir -p "$out"
for app in "$@"; do
    dir=$(dirname "$app")
    wasm=$out/$(basename "$dir").wasm
    world=$(sed -n 's/^# world: *//p' "$app" | head -n 1)
    if [ -z "$world" ]; then
        echo "$app: no '# world: ...' line naming its world" >&2
        exit 1
    fi
    if [ -f "$wasm" ] && [ "$wasm" -nt "$cpy" ] &&
        [ -z "$(find "$dir" "$sdk/weft_sdk" "$wit" \( -name '*.py' -o -name '*.wit' \) -newer "$wasm" | head -n 1)" ]; then
        continue
    fi
    echo "componentize-py: $dir ($world) -> $wasm"
    "$cpy" --quiet -d "$wit" -w "$world" \
        componentize app -p "$dir" -p "$sdk" -o "$wasm.part"
    mv "$wasm.part" "$wasm"
done
