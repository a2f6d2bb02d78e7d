#!/usr/bin/env bash
# fan (DCASE 2026): the shared staged recipe for one machine type. Options as asd.sh (e.g. --config, --stage).
exec "$(dirname "${BASH_SOURCE[0]}")/asd.sh" --machine fan "$@"
