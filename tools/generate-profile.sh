#!/usr/bin/env bash
# Where the decoder firmware's instructions go, per decode step:
# tools/firmware-profile.sh --generate (see there).
# Usage: tools/generate-profile.sh [MODEL_FILE] [ROWS]   (ROWS: table length, default 40)
exec "$(dirname "$0")/firmware-profile.sh" --generate "$@"
