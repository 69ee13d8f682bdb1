# Shared by scripts/demo and scripts/test: make sure ./.venv exists and holds the project with the given extras.
# Installs Debian's python3-venv when it is missing (as root, else says the exact command to run).
set -euo pipefail

ensure_venv() {
  local spec="$1"  # "." or ".[extra,...]"
  if [ ! -x .venv/bin/python ]; then
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
      if [ "$(id -u)" = 0 ]; then
        echo "installing python3-venv (Debian package)..." >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      else
        echo "python3-venv is missing: as root, run  apt-get install -y python3-venv  and try again" >&2
        exit 1
      fi
    fi
    python3 -m venv .venv
  fi
  # The stamp records the dependencies' hash and the extras installed. Nothing is installed when the dependencies
  # are the same and every extra asked for is there already (the demo after the tests needs nothing new); otherwise
  # the union of what was installed and what is asked for, so switching between the demo and the tests installs
  # nothing again.
  local stamp=".venv/.edge-installed" hash have="" want extras
  hash="$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)"
  want="$(extras_of "$spec")"
  if [ -f "$stamp" ] && [ "$(cut -d' ' -f1 "$stamp")" = "$hash" ]; then
    have="$(cut -s -d' ' -f2 "$stamp")"
    case "$have" in .*) have="$(extras_of "$have")" ;; esac  # a stamp of before: the spec itself
  fi
  extras="$(printf '%s\n' ${have//,/ } ${want//,/ } | sed '/^$/d' | sort -u | paste -sd, -)"
  if [ ! -f "$stamp" ] || [ "$(cut -d' ' -f1 "$stamp")" != "$hash" ] || [ "$extras" != "$have" ]; then
    echo "installing edge and its dependencies into .venv (.${extras:+[$extras]})..." >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}"
    echo "$hash $extras" > "$stamp"
  fi
}

# ".[test,plot]" -> "plot,test"; "." -> ""
extras_of() {
  local inner="${1#*[}"
  [ "$inner" = "$1" ] && return 0
  printf '%s\n' ${inner%]} | tr ',' '\n' | sed '/^$/d' | sort -u | paste -sd, -
}
