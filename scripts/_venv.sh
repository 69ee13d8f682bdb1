# Shared by scripts/demo and scripts/test: make sure ./.venv exists and holds the project with the given extras.
# Installs Debian's python3-venv when it is missing (as root, else says the exact command to run).
set -euo pipefail

ensure_venv() {
  local spec="$1"
  if [ ! -x .venv/bin/python ]; then
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
      if [ "$(id -u)" = 0 ]; then
        echo "installing python3-venv (Debian package)..." >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      else
        echo "python3-venv is missing: run  sudo apt-get install -y python3-venv  and try again" >&2
        exit 1
      fi
    fi
    python3 -m venv .venv
  fi
  # Reinstall only when the dependencies or the requested extras changed.
  local stamp=".venv/.edge-installed" want
  want="$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16) $spec"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing edge and its dependencies into .venv ($spec)..." >&2
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec"
    echo "$want" > "$stamp"
  fi
}
