# Shared helpers for the scripts in this folder; source it, don't run it.
# shellcheck shell=bash

FLEET_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# log MESSAGE...: one line on stderr, prefixed with the calling script's name.
log() {
    printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2
}

# die MESSAGE...: log and exit non-zero.
die() {
    log "error: $*"
    exit 1
}

# fleet_home: the absolute FLEET_HOME; a relative value is taken from the repo root. Unset, it is
# fleetctl's default (fleetctl/config.py default_home), so `make deps` puts Consul where fleetctl looks.
fleet_home() {
    local home="${FLEET_HOME:-${XDG_STATE_HOME:-${HOME:?}/.local/state}/ocr-fleet}"
    case "$home" in
        /*) printf '%s\n' "$home" ;;
        *) printf '%s\n' "$FLEET_REPO_ROOT/${home#./}" ;;
    esac
}

# as_root CMD...: run CMD as root, through sudo when we are not root.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root for: $*"
    fi
}

# _apt_entries FILE...: print "URI<TAB>SUITE" for each enabled `deb` entry in the
# given apt source files, both one-line (.list) and deb822 (.sources) formats.
_apt_entries() {
    local f
    for f in "$@"; do
        [ -r "$f" ] || continue
        case "$f" in
            *.sources)
                # deb822: blank-line separated stanzas; fields may continue on
                # indented lines; `#` lines are comments.
                awk '
                    function flush(   n, i, u, s, nu, ns, us, ss) {
                        if (types ~ /(^|[ \t])deb([ \t]|$)/ && tolower(enabled) != "no") {
                            nu = split(uris, us, /[ \t]+/)
                            ns = split(suites, ss, /[ \t]+/)
                            for (u = 1; u <= nu; u++) for (s = 1; s <= ns; s++)
                                if (us[u] != "" && ss[s] != "") print us[u] "\t" ss[s]
                        }
                        types = uris = suites = enabled = ""; last = ""
                    }
                    /^#/ { next }
                    /^[ \t]*$/ { flush(); next }
                    /^[ \t]/ {
                        if (last == "uris") uris = uris " " $0
                        else if (last == "suites") suites = suites " " $0
                        next
                    }
                    {
                        key = tolower($0); sub(/:.*/, "", key)
                        val = $0; sub(/^[^:]*:[ \t]*/, "", val)
                        last = key
                        if (key == "types") types = val
                        else if (key == "uris") uris = val
                        else if (key == "suites") suites = val
                        else if (key == "enabled") enabled = val
                    }
                    END { flush() }
                ' "$f"
                ;;
            *)
                # one-line: deb [opt=val ...] URI SUITE COMPONENT...
                awk '
                    /^[ \t]*deb[ \t]/ {
                        line = $0
                        sub(/#.*/, "", line)
                        gsub(/\[[^]]*\]/, "", line)
                        n = split(line, w, /[ \t]+/)
                        i = (w[1] == "") ? 2 : 1
                        if (n >= i + 2) print w[i + 1] "\t" w[i + 2]
                    }
                ' "$f"
                ;;
        esac
    done
}

# debian_mirror: the Debian archive URI this machine's apt uses, read from its
# source files; the FLEET_DEBIAN_MIRROR environment variable overrides.
debian_mirror() {
    if [ -n "${FLEET_DEBIAN_MIRROR:-}" ]; then
        printf '%s\n' "${FLEET_DEBIAN_MIRROR%/}"
        return 0
    fi
    debian_mirror_from /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources
}

# debian_mirror_from FILE...: the Debian archive URI in these apt source files.
# Prefers an entry for a release suite itself (e.g. "bookworm") over
# -updates/-security entries and the security archive.
debian_mirror_from() {
    local entries uri
    entries="$(_apt_entries "$@")"
    # A main archive suite is a bare codename or alias, not foo-updates,
    # foo-security, foo-backports and so on; the security archive is elsewhere.
    uri="$(printf '%s\n' "$entries" | awk -F'\t' '$2 !~ /-/ && $2 !~ /\// && $1 !~ /security/ { print $1; exit }')"
    [ -n "$uri" ] || return 1
    printf '%s\n' "${uri%/}"
}

# at_exit CMD: run CMD (one string, eval'd) when the script exits, before the
# temporary directories are removed.
_FLEET_EXIT_HOOKS=()
_FLEET_TEMP_DIRS=()
at_exit() {
    _FLEET_EXIT_HOOKS+=("$1")
    _fleet_trap_exit
}
# Run the hooks on INT and TERM too: they become a plain exit.
_fleet_trap_exit() {
    trap _fleet_on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
_fleet_on_exit() {
    local h d
    for h in "${_FLEET_EXIT_HOOKS[@]}"; do
        eval "$h" || true
    done
    for d in "${_FLEET_TEMP_DIRS[@]}"; do
        # --one-file-system: never descend into something still mounted there.
        rm -rf --one-file-system "$d"
    done
}

# temp_dir VAR: make a temporary directory, store its path in VAR, and remove it
# when the script exits (however it exits).
temp_dir() {
    local d
    d="$(mktemp -d "${TMPDIR:-/tmp}/$(basename "$0" .sh).XXXXXX")"
    _FLEET_TEMP_DIRS+=("$d")
    _fleet_trap_exit
    printf -v "$1" '%s' "$d"
}

# quietly LOGFILE CMD...: run CMD with its output in LOGFILE, shown only if it fails.
quietly() {
    local logfile="$1"
    shift
    if ! "$@" >"$logfile" 2>&1; then
        tail -n 40 "$logfile" >&2
        die "failed: $*"
    fi
}

# usage: print the calling script's header comment (its help text).
usage() {
    sed -n '2,/^[^#]/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'
}
