#!/usr/bin/env bash
# Install, upgrade or remove the edge gateway on Raspberry Pi OS Bookworm (or Debian 12), from this checkout.
# Run it again to upgrade: it is idempotent, and it never overwrites /etc/edge/gateway.yaml. docs/operations.md.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bash scripts/install-gateway.sh [options]   (as root)

Installs the gateway: the system user `edge` (in the groups gpio, i2c, spi and dialout that exist), a virtualenv in
/opt/edge/venv that sees the distribution's packages (python3-lgpio), the package, /etc/edge/gateway.yaml (only when
there is none yet: config/gateway.installed.yaml, the simulated greenhouse, which starts as it is), the reference
of every option at /etc/edge/gateway.example.yaml, and the systemd unit edge-gateway.service, enabled.

  --from-checkout     build the package from this checkout (the default)
  --wheel PATH        install this wheel instead
  --pip-args "ARGS"   extra arguments for every pip call, e.g. an offline install from a wheel directory:
                        --pip-args "--no-index --find-links /media/usb/wheels"
                      or with every dependency already installed (the tests do this):
                        --pip-args "--no-index --no-deps --no-build-isolation"
  --root DIR          install into DIR instead of / (tests, image builds): users are added to DIR/etc/passwd
                      when it exists, the unit is enabled with `systemctl --root`, no service is started, and
                      the venv's scripts point at /opt/edge/venv as they will once DIR is the root
  --no-systemctl      never call systemctl (print what to run instead)
  --uninstall         stop, disable and remove the unit and the venv; keep the buffer (/var/lib/edge) and the
                      config (/etc/edge)
  --uninstall --purge also remove /var/lib/edge, /etc/edge and the user
  -h, --help          this text

Environment: PYTHON (default /usr/bin/python3, the distribution's Python, whose packages the venv sees).
EOF
}

CHECKOUT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-/usr/bin/python3}"
PREFIX=/opt/edge
VENV="$PREFIX/venv"
SERVICE=edge-gateway.service
WEB_SERVICE=edge-web.service  # the greenhouse page: installed, enabled by the technician once web.listen is set
SERVICE_USER=edge
DEVICE_GROUPS=(gpio i2c spi dialout)
ROOT=""
WHEEL=""
PIP_ARGS=()
USE_SYSTEMCTL=1
MODE=install
PURGE=0

while [ $# -gt 0 ]; do
  case "$1" in
    --from-checkout) WHEEL=""; shift ;;
    --wheel) WHEEL="$(realpath "${2:?--wheel needs a path}")"; shift 2 ;;
    --pip-args) read -r -a PIP_ARGS <<< "${2?--pip-args needs a value}"; shift 2 ;;
    --root) ROOT="$(realpath -m "${2:?--root needs a directory}")"; shift 2 ;;
    --no-systemctl) USE_SYSTEMCTL=0; shift ;;
    --uninstall) MODE=uninstall; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$ROOT" = / ] && ROOT=""
if [ "$PURGE" = 1 ] && [ "$MODE" != uninstall ]; then
  echo "--purge goes with --uninstall" >&2; exit 2
fi
R="$ROOT"  # prefix of every path written: empty for the running system
AS_ROOT=0; [ "$(id -u)" = 0 ] && AS_ROOT=1
if [ -z "$ROOT" ] && [ "$AS_ROOT" = 0 ]; then
  echo "run it as root (su - on a fresh Debian, or sudo where it is installed): bash $0 $*" >&2; exit 1
fi

say() { echo "install-gateway: $*" >&2; }
# systemd as PID 1 on this machine, and we act on this machine (not on a --root tree)
live_systemd() { [ -z "$ROOT" ] && [ "$USE_SYSTEMCTL" = 1 ] && [ -d /run/systemd/system ]; }
# systemctl acting on files only (--root): enabling writes a symlink, nothing runs
offline_systemctl() { [ -n "$ROOT" ] && [ "$USE_SYSTEMCTL" = 1 ] && command -v systemctl >/dev/null; }
in_group_file() { [ -f "$R/etc/group" ] && grep -q "^$1:" "$R/etc/group"; }
member_of() { grep -Eq "^$2:[^:]*:[^:]*:(.*,)?$1(,.*)?$" "$R/etc/group"; }
gid_of() { awk -F: -v g="$1" '$1 == g { print $3 }' "$R/etc/group"; }
shadow_prefix() { if [ -n "$ROOT" ]; then echo "--prefix $ROOT"; fi; }

# ------------------------------------------------------------------------------------------------------ uninstall

if [ "$MODE" = uninstall ]; then
  if live_systemd; then
    systemctl disable --now "$SERVICE" 2>/dev/null || true  # the stop runs ExecStopPost: outputs off
  elif offline_systemctl; then
    systemctl --root="$ROOT" disable "$SERVICE" >/dev/null 2>&1 || true
  fi
  if live_systemd; then
    systemctl disable --now "$WEB_SERVICE" 2>/dev/null || true
  elif offline_systemctl; then
    systemctl --root="$ROOT" disable "$WEB_SERVICE" >/dev/null 2>&1 || true
  fi
  rm -f "$R/etc/systemd/system/$SERVICE" "$R/etc/systemd/system/multi-user.target.wants/$SERVICE"
  rm -f "$R/etc/systemd/system/$WEB_SERVICE" "$R/etc/systemd/system/multi-user.target.wants/$WEB_SERVICE"
  if [ "$(readlink "$R/usr/local/bin/edge" 2>/dev/null)" = "$VENV/bin/edge" ]; then rm -f "$R/usr/local/bin/edge"; fi
  rm -rf "$R$PREFIX"  # PREFIX is /opt/edge: ours alone
  if [ "$PURGE" = 1 ]; then
    rm -rf "$R/etc/systemd/system/$SERVICE.d" "$R/var/lib/edge" "$R/etc/edge"
    if [ "$AS_ROOT" = 1 ] && [ -f "$R/etc/passwd" ] && grep -q "^$SERVICE_USER:" "$R/etc/passwd"; then
      # shellcheck disable=SC2046
      userdel $(shadow_prefix) "$SERVICE_USER"
    fi
    if [ "$AS_ROOT" = 1 ] && in_group_file "$SERVICE_USER"; then  # userdel keeps it without USERGROUPS_ENAB
      # shellcheck disable=SC2046
      groupdel $(shadow_prefix) "$SERVICE_USER"
    fi
    say "removed the unit, the venv, the buffer (/var/lib/edge), the config (/etc/edge) and the user"
  else
    say "removed the unit and the venv; kept the buffer (/var/lib/edge) and the config (/etc/edge)"
  fi
  live_systemd && systemctl daemon-reload
  exit 0
fi

# --------------------------------------------------------------------------------------------------------- install

# 1. The distribution's Python with venv (and lgpio on a Pi). Only on the running system: a --root tree is staged.
if [ -z "$ROOT" ] && command -v apt-get >/dev/null; then
  missing=()
  "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  if grep -qs "Raspberry Pi" /proc/device-tree/model && ! "$PYTHON" -c 'import lgpio' 2>/dev/null; then
    missing+=(python3-lgpio)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (Debian packages)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { say "$PYTHON is older than 3.11 (Raspberry Pi OS Bookworm has 3.11)"; exit 1; }

# 2. The service user, in the device groups that exist.
if [ ! -f "$R/etc/passwd" ]; then
  say "no $R/etc/passwd: not creating the user $SERVICE_USER"
elif [ "$AS_ROOT" = 0 ]; then
  say "not root: not creating the user $SERVICE_USER"
else
  if ! grep -q "^$SERVICE_USER:" "$R/etc/passwd"; then
    # shellcheck disable=SC2046
    useradd $(shadow_prefix) --system --user-group --home-dir /var/lib/edge --no-create-home \
      --shell /usr/sbin/nologin --comment "greenhouse gateway (edge)" "$SERVICE_USER"
    say "created the system user $SERVICE_USER"
  fi
  for group in "${DEVICE_GROUPS[@]}"; do
    if in_group_file "$group" && ! member_of "$SERVICE_USER" "$group"; then
      # shellcheck disable=SC2046
      usermod $(shadow_prefix) --append --groups "$group" "$SERVICE_USER"
    fi
  done
fi

# 3. The virtualenv, seeing the distribution's packages (python3-lgpio is not on PyPI for every Pi).
if [ ! -x "$R$VENV/bin/python" ]; then  # absent, or its Python is gone (an OS upgrade): make it afresh
  "$PYTHON" -m venv --clear --system-site-packages "$R$VENV"
  say "created the virtualenv $VENV"
fi
pip() { "$R$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }

# 4. The package: a wheel built from a copy of the checkout (so no build files land in it), or the one given.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ -z "$WHEEL" ]; then
  mkdir -p "$work/src" "$work/dist"
  tar -C "$CHECKOUT" --exclude=./.git --exclude=./.venv --exclude=./var --exclude=./build --exclude=./dist \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude=./tests --exclude=./bench -cf - . | tar -C "$work/src" -xf -
  pip wheel --no-deps "${PIP_ARGS[@]}" --wheel-dir "$work/dist" "$work/src"
  WHEEL="$(ls "$work"/dist/edge-*.whl)"
fi
pip install "${PIP_ARGS[@]}" "$WHEEL"                             # its dependencies, unless --no-deps
pip install --no-deps --force-reinstall "${PIP_ARGS[@]}" "$WHEEL"  # the package itself, even at the same version
if [ -n "$ROOT" ]; then  # scripts name the venv as it will be seen once $ROOT is /
  grep -lIs "$R$VENV" "$R$VENV"/bin/* "$R$VENV/pyvenv.cfg" | xargs -r sed -i "s|$R$VENV|$VENV|g"
fi
install -d "$R/usr/local/bin"
ln -sfn "$VENV/bin/edge" "$R/usr/local/bin/edge"  # `edge doctor`, `edge status` for the technician
say "installed $(basename "$WHEEL") into $VENV"

# 5. The config, only if there is none (never overwritten): the simulated greenhouse with absolute paths and no
#    secrets, so that a fresh install starts; the reference of every option next to it (replaced every time).
install -d -m 0750 "$R/etc/edge"
install -m 0640 "$CHECKOUT/config/gateway.example.yaml" "$R/etc/edge/gateway.example.yaml"
if [ ! -e "$R/etc/edge/gateway.yaml" ]; then
  install -m 0640 "$CHECKOUT/config/gateway.installed.yaml" "$R/etc/edge/gateway.yaml"
  FRESH_CONFIG=1
  say "installed /etc/edge/gateway.yaml: the simulated greenhouse (starts as it is; every option with a comment is"
  say "  in /etc/edge/gateway.example.yaml)"
else
  FRESH_CONFIG=0
  say "kept the existing /etc/edge/gateway.yaml"
fi
if [ "$AS_ROOT" = 1 ] && in_group_file "$SERVICE_USER"; then  # readable by the service, not by everyone
  chown "0:$(gid_of "$SERVICE_USER")" "$R/etc/edge" "$R/etc/edge/gateway.yaml" "$R/etc/edge/gateway.example.yaml"
fi

# 6. The unit, enabled. A fresh install is not started (the technician checks first); an upgrade is restarted.
install -D -m 0644 "$CHECKOUT/systemd/$SERVICE" "$R/etc/systemd/system/$SERVICE"
install -D -m 0644 "$CHECKOUT/systemd/$WEB_SERVICE" "$R/etc/systemd/system/$WEB_SERVICE"
if live_systemd; then
  systemctl daemon-reload
  systemctl try-restart "$WEB_SERVICE"  # an upgrade: the page runs the new code too, if it was running
  systemctl enable --quiet "$SERVICE"
  if [ "$FRESH_CONFIG" = 1 ]; then
    say "enabled $SERVICE; next (as root), to see the simulated greenhouse run:"
    say "  edge doctor -c /etc/edge/gateway.yaml && systemctl start $SERVICE && edge status -c /etc/edge/gateway.yaml"
    say "then edit /etc/edge/gateway.yaml for the real greenhouse, edge check -c it, systemctl restart $SERVICE"
  else
    systemctl try-restart "$SERVICE"  # an upgrade: restart it if it was running
    say "enabled $SERVICE (restarted if it was running)"
  fi
elif offline_systemctl; then
  systemctl --root="$ROOT" enable --quiet "$SERVICE"
  say "enabled $SERVICE in $ROOT"
else
  [ "$USE_SYSTEMCTL" = 1 ] && why="systemd is not running here" || why="--no-systemctl"
  say "$why: run  systemctl daemon-reload && systemctl enable $SERVICE  where systemd runs"
fi
