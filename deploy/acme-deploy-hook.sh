#!/bin/sh
# acme.sh deploy hook for Postern: writes the key and the full certificate
# chain into one PEM file (what tls.ini's key= and cert= both point at), then
# asks relay-in and relay-out to reload it.
#
# As an acme.sh hook (acme.sh sources this file and calls postern_deploy):
#
#   ln -s /usr/local/share/postern/acme-deploy-hook.sh ~/.acme.sh/deploy/postern.sh
#   ~/.acme.sh/acme.sh --deploy -d mail.example.com --deploy-hook postern
#
# acme.sh remembers the hook and runs it after every renewal. Installed as
# ~/.acme.sh/deploy/haraka.sh it also answers to the seed guide's
# `--deploy-hook haraka`, so an existing acme.sh setup needs no change.
#
# Directly (for testing, or with any other ACME client):
#
#   acme-deploy-hook.sh DOMAIN KEY CERT CA FULLCHAIN
#
# Settings (environment; acme.sh saves them per domain on success):
#   DEPLOY_POSTERN_PEM       the PEM to write (default /etc/postern/tls/DOMAIN.pem)
#   DEPLOY_POSTERN_GROUP     its group (default mail), which the daemons run in
#   DEPLOY_POSTERN_SERVICES  units to reload (default "relay-in relay-out");
#                            "none" writes the file only
#
# The file is replaced atomically: written to a temporary file in the same
# directory, fsynced, given mode 0640 and its group, then renamed over the
# old one, so a daemon reading it never sees half a key. POSIX sh, no
# `set -e` at the top level: acme.sh sources this file into its own shell.

########  acme.sh entry points  ########

# domain keyfile certfile cafile fullchain
postern_deploy() {
  _postern_getconf DEPLOY_POSTERN_PEM
  _postern_getconf DEPLOY_POSTERN_GROUP
  _postern_getconf DEPLOY_POSTERN_SERVICES

  _postern_write_pem "$1" "$2" "$3" "$4" "$5" || return 1
  _postern_reload || return 1

  _postern_saveconf DEPLOY_POSTERN_PEM "${DEPLOY_POSTERN_PEM:-}"
  _postern_saveconf DEPLOY_POSTERN_GROUP "${DEPLOY_POSTERN_GROUP:-}"
  _postern_saveconf DEPLOY_POSTERN_SERVICES "${DEPLOY_POSTERN_SERVICES:-}"
  return 0
}

# The seed guide deploys with `--deploy-hook haraka`; acme.sh calls
# <hook>_deploy from <hook>.sh.
haraka_deploy() {
  postern_deploy "$@"
}

########  internals  ########

_postern_info() {
  if command -v _info >/dev/null 2>&1; then
    _info "postern: $*"
  else
    echo "acme-deploy-hook: $*" >&2
  fi
}

_postern_err() {
  if command -v _err >/dev/null 2>&1; then
    _err "postern: $*"
  else
    echo "acme-deploy-hook: error: $*" >&2
  fi
}

# acme.sh keeps deploy settings in the domain's config so renewals reuse
# them; run directly there is nothing to load or save.
_postern_getconf() {
  if command -v _getdeployconf >/dev/null 2>&1; then
    _getdeployconf "$1"
  fi
}

_postern_saveconf() {
  if [ -n "$2" ] && command -v _savedeployconf >/dev/null 2>&1; then
    _savedeployconf "$1" "$2"
  fi
}

# _postern_has_pem FILE LABEL: FILE holds a PEM block whose type ends in LABEL.
_postern_has_pem() {
  [ -s "$1" ] && grep -q -- "-----BEGIN .*$2-----" "$1"
}

_postern_write_pem() {
  _postern_domain=$1
  _postern_key=$2
  _postern_cert=$3
  _postern_ca=$4
  _postern_fullchain=$5

  if [ -z "$_postern_domain" ]; then
    _postern_err "no domain given"
    return 1
  fi
  case "$_postern_domain" in
    */* | .*)
      _postern_err "not a domain name: $_postern_domain"
      return 1
      ;;
  esac
  if ! _postern_has_pem "$_postern_key" "PRIVATE KEY"; then
    _postern_err "no private key in '$_postern_key'"
    return 1
  fi
  # The full chain is what clients need; older acme.sh versions may leave it
  # empty, then certificate + CA is the same thing.
  if _postern_has_pem "$_postern_fullchain" "CERTIFICATE"; then
    set -- "$_postern_key" "$_postern_fullchain"
  elif _postern_has_pem "$_postern_cert" "CERTIFICATE"; then
    set -- "$_postern_key" "$_postern_cert"
    if _postern_has_pem "$_postern_ca" "CERTIFICATE"; then
      set -- "$@" "$_postern_ca"
    fi
  else
    _postern_err "no certificate in '$_postern_fullchain' or '$_postern_cert'"
    return 1
  fi

  _postern_pem=${DEPLOY_POSTERN_PEM:-/etc/postern/tls/$_postern_domain.pem}
  _postern_group=${DEPLOY_POSTERN_GROUP:-mail}
  _postern_dir=$(dirname -- "$_postern_pem")
  if [ ! -d "$_postern_dir" ]; then
    _postern_err "directory $_postern_dir does not exist (deploy/install.sh creates /etc/postern/tls)"
    return 1
  fi

  # mktemp creates the file with mode 0600, so the key is never readable by
  # others, not even for a moment.
  if ! _postern_tmp=$(mktemp "$_postern_dir/.${_postern_pem##*/}.XXXXXX"); then
    _postern_err "cannot create a temporary file in $_postern_dir"
    return 1
  fi
  # awk 1 ends every file with a newline, so PEM blocks never run together.
  if ! awk 1 "$@" >"$_postern_tmp"; then
    _postern_err "cannot write $_postern_tmp"
    rm -f -- "$_postern_tmp"
    return 1
  fi
  if ! chgrp -- "$_postern_group" "$_postern_tmp" || ! chmod 0640 "$_postern_tmp"; then
    _postern_err "cannot give $_postern_tmp group $_postern_group and mode 0640"
    rm -f -- "$_postern_tmp"
    return 1
  fi
  # Durable before it becomes visible: a crash after the rename must not
  # leave an empty certificate behind.
  sync -- "$_postern_tmp" 2>/dev/null || sync
  if ! mv -f -- "$_postern_tmp" "$_postern_pem"; then
    _postern_err "cannot rename $_postern_tmp to $_postern_pem"
    rm -f -- "$_postern_tmp"
    return 1
  fi
  _postern_info "wrote $_postern_pem (key + certificate chain, group $_postern_group, mode 0640)"
  return 0
}

_postern_reload() {
  _postern_services=${DEPLOY_POSTERN_SERVICES:-relay-in relay-out}
  if [ "$_postern_services" = none ]; then
    return 0
  fi
  _postern_units=""
  for _postern_service in $_postern_services; do
    case "$_postern_service" in
      *.service) _postern_units="$_postern_units $_postern_service" ;;
      *) _postern_units="$_postern_units $_postern_service.service" ;;
    esac
  done
  # try-reload-or-restart reloads (SIGHUP) the units that run and leaves the
  # others stopped, so a host that runs only one of the relays does not fail
  # the deploy. Both daemons also notice a changed file on their own; the
  # reload makes it immediate.
  # shellcheck disable=SC2086 # one word per unit
  if ! systemctl try-reload-or-restart $_postern_units; then
    _postern_err "systemctl try-reload-or-restart$_postern_units failed"
    return 1
  fi
  _postern_info "reloaded$_postern_units"
  return 0
}

########  run directly  ########

# Sourced by acme.sh, its helper functions exist and the caller decides what
# to run; run as a script, take acme.sh's arguments from the command line.
if ! command -v _savedomainconf >/dev/null 2>&1 && ! command -v _getdeployconf >/dev/null 2>&1; then
  case "${1:-}" in
    -h | --help)
      sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
      exit 0
      ;;
  esac
  if [ $# -ne 5 ]; then
    echo "usage: $0 DOMAIN KEY CERT CA FULLCHAIN   (--help for more)" >&2
    exit 2
  fi
  postern_deploy "$@" || exit 1
  exit 0
fi
