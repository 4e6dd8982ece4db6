# shellcheck shell=bash
# bench/cli.sh - the start every bench script shares: `say` (a message
# to stderr, prefixed with the script's name) and "-h" / "--help", which
# prints the comment block at the top of the script and exits. Sourced
# (by lib.sh, and by the scripts that need nothing more), with the
# script's arguments still in place.

say() { echo "${0##*/}: $*" >&2; }

case "${1:-}" in
-h | --help)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 0
    ;;
esac
