# Shared set-up of scripts/test and scripts/run (sourced, not run): the project's virtualenv.
# Expects `die` to be defined by the caller and the current directory to be the repository root.

find_python() {
  local candidate
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

ensure_venv() { # [extras]: create .venv and pip install -e '.[extras]' (again when pyproject.toml changes)
  local extras=${1-dev} spec=. python stamp digest
  [[ -n $extras ]] && spec=".[$extras]"
  stamp=.venv/.formicary-install-${extras:-base}
  if [[ ! -x .venv/bin/python ]]; then
    python=$(find_python) || die "no python3.11 (or python3 >= 3.11) found"
    printf '==> setup: creating .venv with %s\n' "$python"
    rm -rf .venv
    "$python" -m venv .venv
  fi
  digest=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [[ ! -f $stamp || $(<"$stamp") != "$digest" ]]; then
    printf "==> setup: pip install -e '%s'\n" "$spec"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec" ||
      die "pip install -e '$spec' failed"
    echo "$digest" >"$stamp"
  fi
}
