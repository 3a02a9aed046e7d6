# Sourced by scripts/demo, scripts/test and scripts/install-system-deps: the Python that .venv is made with.
# The caller defines die().

# Is $1 (a path or a command) a Python >= 3.11?
is_python311() {
    command -v "$1" >/dev/null 2>&1 && "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

# Can the Python $1 create a venv with pip in it? (Debian's needs its python3.X-venv package.)
makes_venvs() {
    "$1" -c 'import ensurepip, venv' >/dev/null 2>&1
}

# The interpreter for .venv: $OMNICANAL_PYTHON when set; else the distribution's python3.11 (or python3 >= 3.11)
# when it can make venvs; else python3.11, then python3, found on PATH.
# The distribution's build comes first: Debian links its interpreter statically and builds it with profile-guided
# and link-time optimization, and the server spent 18 % less CPU a request on it than on a default pyenv build
# of the same Python, a shared libpython without those (K1, docs/benchmarks-commerce.md).
pick_python() {
    local candidate
    if [ -n "${OMNICANAL_PYTHON:-}" ]; then
        is_python311 "$OMNICANAL_PYTHON" || return 1
        command -v "$OMNICANAL_PYTHON"
        return 0
    fi
    for candidate in /usr/bin/python3.11 /usr/bin/python3; do
        if is_python311 "$candidate" && makes_venvs "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
    for candidate in python3.11 python3; do
        if is_python311 "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# Create .venv (or reuse a working one) and `pip install -e ".$1"` into it, skipped when pyproject.toml
# has not changed since the last successful install with the same extras.
ensure_venv() {
    local extras=$1 py stamp hash want have
    if [ -x .venv/bin/python ] \
        && .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "reusing .venv ($(.venv/bin/python --version))"
    else
        py=$(pick_python) || die "Python >= 3.11 not found (install python3.11, or name one in OMNICANAL_PYTHON)"
        rm -rf .venv
        echo "creating .venv with $py ($("$py" --version))"
        "$py" -m venv .venv || die "could not create .venv (Debian: apt-get install python3.11-venv)"
    fi
    stamp=.venv/.omnicanal-installed
    hash=$(sha256sum pyproject.toml | cut -d' ' -f1)
    want="$hash $extras"
    have=$(cat "$stamp" 2>/dev/null || true)
    # An install with the dev extras also serves a plain install.
    if [ -x .venv/bin/omnicanal ] && { [ "$have" = "$want" ] || { [ -z "$extras" ] && [ "$have" = "$hash [dev]" ]; }; }; then
        echo "omnicanal$extras already installed (pyproject.toml unchanged)"
        return 0
    fi
    echo "pip install -e \".$extras\""
    rm -f "$stamp"
    PIP_DISABLE_PIP_VERSION_CHECK=1 .venv/bin/python -m pip install -q -e ".$extras"
    echo "$want" >"$stamp"
}
