#!/usr/bin/env bash
# Installs Postern on a VPS: the release binaries, the user they run as, the
# example configuration (never overwriting a file that exists), the queue
# directory and the systemd units. Safe to run again: it changes only what
# differs, so it is also the upgrade path.
#
# DESTDIR installs into a scratch root instead of / (packaging, CI): then no
# user is created and systemd is not told; if the user does not exist, the
# spool is left to root and the chown to apply on the target is printed.
# On Debian and Ubuntu, deploy/build-deb.sh builds a package instead.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: deploy/install.sh [options]

Installs relay-in and relay-out with their configuration, queue and systemd
units. Run as root from a checkout after `cargo build --release`.

Options:
  --bin-dir DIR      where the built binaries are
                     (default: $CARGO_TARGET_DIR/release or target/release)
  --prefix DIR       install binaries to DIR/bin (default: /usr/local; the
                     units' ExecStart lines follow)
  --destdir DIR      install into DIR as the root directory (also: DESTDIR=)
  --owner USER:GROUP who runs the daemons and owns the queue (default:
                     postern:mail); configuration is root:GROUP, mode 0640
  --no-user          do not create USER (it must exist, or give --owner;
                     with --destdir a missing USER is given the spool later)
  --setcap           also give relay-in cap_net_bind_service, for running it
                     outside systemd (the units do not need it)
  --authbind         also allow USER to bind port 25 through authbind, for
                     running relay-in outside systemd
  -h, --help         this text

What goes where (under DESTDIR, if set):
  PREFIX/bin/relay-in, PREFIX/bin/relay-out          root:root 0755
  PREFIX/share/postern/acme-deploy-hook.sh           root:root 0755
  /etc/postern/in, /etc/postern/out, /etc/postern/tls  root:GROUP 0750
      (files from config-in/ and config-out/, root:GROUP 0640, only if absent)
  /var/spool/postern/queue, /var/spool/postern/in    USER:GROUP 0700
  /etc/systemd/system/relay-in.service, relay-out.service  root:root 0644
EOF
}

die() {
    echo "install.sh: error: $*" >&2
    exit 1
}

say() {
    echo "install.sh: $*"
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin_dir=""
prefix=${PREFIX:-/usr/local}
destdir=${DESTDIR:-}
owner="postern:mail"
create_user=yes
want_setcap=no
want_authbind=no

while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a directory"; bin_dir=$2; shift 2 ;;
        --bin-dir=*) bin_dir=${1#*=}; shift ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#*=}; shift ;;
        --destdir) [ $# -ge 2 ] || die "--destdir needs a directory"; destdir=$2; shift 2 ;;
        --destdir=*) destdir=${1#*=}; shift ;;
        --owner) [ $# -ge 2 ] || die "--owner needs USER:GROUP"; owner=$2; shift 2 ;;
        --owner=*) owner=${1#*=}; shift ;;
        --no-user) create_user=no; shift ;;
        --setcap) want_setcap=yes; shift ;;
        --authbind) want_authbind=yes; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
done

case "$owner" in
    ?*:?*) user=${owner%%:*}; group=${owner#*:} ;;
    *) die "--owner must be USER:GROUP, got '$owner'" ;;
esac
case "$prefix" in
    /*) prefix=${prefix%/} ;;
    *) die "--prefix must be an absolute path, got '$prefix'" ;;
esac
if [ -n "$destdir" ]; then
    mkdir -p "$destdir"
    destdir=$(cd "$destdir" && pwd)
    [ "$destdir" != / ] || destdir=""
fi
[ -n "$bin_dir" ] || bin_dir="${CARGO_TARGET_DIR:-$repo/target}/release"
[ "$(id -u)" -eq 0 ] || die "run as root: it sets owners and modes (use --destdir for a scratch root)"

for name in relay-in relay-out; do
    [ -x "$bin_dir/$name" ] || die "$bin_dir/$name not found: run 'cargo build --release' first, or give --bin-dir"
done

# --- the user -----------------------------------------------------------

# The group must exist in every case: configuration and certificates are
# readable through it.
getent group "$group" >/dev/null || [[ "$group" =~ ^[0-9]+$ ]] \
    || die "group '$group' does not exist"
if ! getent passwd "$user" >/dev/null && ! [[ "$user" =~ ^[0-9]+$ ]]; then
    if [ "$create_user" = yes ] && [ -z "$destdir" ]; then
        # A system user without a shell or a home: it only runs the daemons.
        useradd --system --gid "$group" --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin --comment "Postern mail relay" "$user"
        say "created system user $user (group $group)"
    elif [ -n "$destdir" ]; then
        # As packaging tools do: the tree is built here, the user exists
        # only on the target. The spool stays root's, and the chown to
        # apply there is printed at the end (the Debian package's postinst
        # does it itself).
        owner_later=yes
    else
        die "user '$user' does not exist (--no-user): create it or give --owner"
    fi
fi

# --- helpers that change only what differs --------------------------------

# Numeric ids, so owners can be compared with stat and a numeric --owner
# works for a user that exists only inside a scratch root.
uid_of() { if [[ "$1" =~ ^[0-9]+$ ]]; then echo "$1"; else id -u "$1"; fi; }
gid_of() { if [[ "$1" =~ ^[0-9]+$ ]]; then echo "$1"; else getent group "$1" | cut -d: -f3; fi; }
if [ "${owner_later:-no}" = yes ]; then user_id=0; else user_id=$(uid_of "$user"); fi
group_id=$(gid_of "$group")

# ensure_dir PATH UID GID MODE: creates the directory, or fixes its owner
# and mode if they differ.
ensure_dir() {
    local path=$1 uid=$2 gid=$3 mode=$4
    if [ ! -d "$path" ]; then
        mkdir -p "$path"
        chown "$uid:$gid" "$path"
        chmod "$mode" "$path"
        say "created $path"
        return
    fi
    if [ "$(stat -c %u:%g "$path")" != "$uid:$gid" ]; then
        chown "$uid:$gid" "$path"
        say "set the owner of $path to $uid:$gid"
    fi
    if [ "$(stat -c %a "$path")" != "${mode#0}" ]; then
        chmod "$mode" "$path"
        say "set the mode of $path to $mode"
    fi
}

# install_file SOURCE TARGET MODE: installs as root:root, or replaces the
# target only when its content, owner or mode differs (install -C keeps an
# identical file as it is, mtime included).
install_file() {
    local source=$1 target=$2 mode=$3
    local existed=no
    [ -e "$target" ] && existed=yes
    if [ "$existed" = yes ] && cmp -s "$source" "$target" \
        && [ "$(stat -c %u:%g:%a "$target")" = "0:0:${mode#0}" ]; then
        return
    fi
    install -C -o root -g root -m "$mode" "$source" "$target"
    if [ "$existed" = yes ]; then say "updated $target"; else say "installed $target"; fi
}

root=$destdir
bin_target="$root$prefix/bin"
share_target="$root$prefix/share/postern"
etc="$root/etc/postern"
queue="$root/var/spool/postern/queue"
backup_spool="$root/var/spool/postern/in"
units="$root/etc/systemd/system"

# --- binaries -------------------------------------------------------------

mkdir -p "$bin_target" "$share_target"
for name in relay-in relay-out; do
    install_file "$bin_dir/$name" "$bin_target/$name" 0755
done
install_file "$repo/deploy/acme-deploy-hook.sh" "$share_target/acme-deploy-hook.sh" 0755

# --- configuration: never overwrite ---------------------------------------

ensure_dir "$etc" 0 "$group_id" 0750
ensure_dir "$etc/tls" 0 "$group_id" 0750
for pair in in:config-in out:config-out; do
    instance=${pair%%:*}
    source_dir="$repo/${pair#*:}"
    ensure_dir "$etc/$instance" 0 "$group_id" 0750
    while IFS= read -r -d '' source; do
        relative=${source#"$source_dir"/}
        # The READMEs explain the examples; they are not configuration.
        [ "$relative" != README.md ] || continue
        target="$etc/$instance/$relative"
        if [ -e "$target" ]; then
            continue
        fi
        mkdir -p "$(dirname "$target")"
        install -o root -g "$group_id" -m 0640 "$source" "$target"
        say "installed $target"
    done < <(find "$source_dir" -type f -print0 | sort -z)
done

# --- the queue ------------------------------------------------------------

ensure_dir "$root/var/spool/postern" 0 0 0755
ensure_dir "$queue" "$user_id" "$group_id" 0700
# relay-in's backup spool (smtp_forward.ini mode=spool).
ensure_dir "$backup_spool" "$user_id" "$group_id" 0700

if [ "${owner_later:-no}" = yes ]; then
    say "note: user '$user' does not exist here: $queue and $backup_spool are root's;" \
        "on the target, create the user, then: chown $user:$group /var/spool/postern/queue /var/spool/postern/in"
fi

# --- systemd units --------------------------------------------------------

mkdir -p "$units"
for name in relay-in relay-out; do
    rendered=$(mktemp)
    # The units name /usr/local/bin; follow --prefix.
    sed "s#/usr/local/bin/#$prefix/bin/#g" "$repo/systemd/$name.service" >"$rendered"
    install_file "$rendered" "$units/$name.service" 0644
    rm -f "$rendered"
done
for old in haraka-in haraka-out; do
    # The new units take these names as aliases; `systemctl enable` cannot
    # create the alias while Haraka's own unit file is in the way.
    if [ -f "$units/$old.service" ] && [ ! -L "$units/$old.service" ]; then
        say "note: $units/$old.service is Haraka's unit; stop and disable it, then move it away" \
            "before 'systemctl enable relay-in relay-out' (docs/setup.md, Migrating from Haraka)"
    fi
done

# --- privileged port outside systemd --------------------------------------

if [ "$want_setcap" = yes ]; then
    command -v setcap >/dev/null || die "--setcap needs setcap (apt-get install libcap2-bin)"
    # Only relay-in binds a port below 1024 (relay-out uses 2526).
    if ! getcap "$bin_target/relay-in" | grep -q cap_net_bind_service; then
        setcap cap_net_bind_service=+ep "$bin_target/relay-in"
        say "gave $bin_target/relay-in cap_net_bind_service (outside systemd it can bind port 25)"
    fi
fi

if [ "$want_authbind" = yes ]; then
    byport="$root/etc/authbind/byport"
    mkdir -p "$byport"
    if [ ! -e "$byport/25" ]; then
        : >"$byport/25"
        say "created $byport/25"
    fi
    # authbind lets a user bind the port if it may execute this file.
    [ "$(stat -c %u:%g "$byport/25")" = "$user_id:$group_id" ] || chown "$user_id:$group_id" "$byport/25"
    [ "$(stat -c %a "$byport/25")" = 500 ] || chmod 0500 "$byport/25"
    [ -x /usr/bin/authbind ] || say "note: authbind is not installed (apt-get install authbind)"
    cat <<EOF
install.sh: to run relay-in through authbind outside systemd:
    authbind --deep $prefix/bin/relay-in -c /etc/postern/in
  The unit does not need it (it has CAP_NET_BIND_SERVICE). If you still want
  authbind there, its setuid helper needs a drop-in (systemctl edit relay-in):
    [Service]
    ExecStart=
    ExecStart=/usr/bin/authbind --deep $prefix/bin/relay-in -c /etc/postern/in
    NoNewPrivileges=no
EOF
fi

# --- tell systemd ---------------------------------------------------------

if [ -z "$destdir" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    say "systemd reloaded its units"
fi

cat <<EOF
install.sh: done. Next:
  1. edit $etc/in and $etc/out (me, host_list, smtp_forward.ini, relay_acl_allow),
     put the certificate in $etc/tls (deploy/acme-deploy-hook.sh does it),
     and check: $prefix/bin/relay-in --check -c /etc/postern/in
                $prefix/bin/relay-out --check -c /etc/postern/out
  2. systemctl enable --now relay-in relay-out
  See docs/setup.md.
EOF
