#!/usr/bin/env bash
# Builds the Debian package postern_VERSION_ARCH.deb from the workspace and
# prints its path on the last line: `apt install ./postern_*.deb` is then the
# whole installation on a Debian or Ubuntu VPS.
#
# Why dpkg-deb from a staged tree rather than cargo-deb: dpkg-deb and
# dpkg-shlibdeps (dpkg-dev) are on every Debian machine that builds Rust,
# while `cargo install cargo-deb --version 3.8.0 --locked` compiles 69 crates
# first: measured 83 s of CPU (2 min 12 s wall on the shared 2-core box) on
# every clean CI run. The tree is small enough to lay out here, one line per
# path, and the maintainer scripts are plain files in deploy/debian/.
#
# What the package holds (`dpkg-deb --contents` to see it):
#   /usr/sbin/relay-in, relay-out               daemons, stripped
#   /usr/lib/systemd/system/relay-{in,out}.service  ExecStart in /usr/sbin;
#                                               Alias= haraka-in / haraka-out
#   /etc/postern/in, /etc/postern/out           config-in/, config-out/: conffiles
#   /usr/share/postern/acme-deploy-hook.sh      the acme.sh deploy hook
#   /usr/share/doc/postern/                     README.md, docs/*.md, copyright,
#                                               changelog.gz
#   /usr/share/man/man8/relay-*.8.gz            from crates/man-pages
# postinst creates the user postern (group mail), /var/spool/postern/{queue,in}
# (postern:mail 0700), sets /etc/postern to root:mail 0750/0640, and enables
# (without starting) the units.
#
# lintian (run here when installed; --no-lint skips it) on Debian 12:
# no errors, no warnings; with --pedantic -I only these notes, kept:
#   - hardening-no-fortify-functions: Rust code has no fortifiable libc
#     calls; the binaries are PIE with full RELRO.
#   - spelling-error-in-binary "wtH": bytes inside compiled code, not text.
#   - package-supports-alternative-init-but-no-init.d-script: the daemons
#     rely on systemd (Type=notify, the hardening); no sysvinit script.
# The test deploy::deb runs lintian and fails on any error or warning.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: deploy/build-deb.sh [options]

Builds target/debian/postern_VERSION_ARCH.deb and prints its path.

Options:
  --profile NAME  cargo profile to build with (default: release)
  --bin-dir DIR   package relay-in, relay-out and postern-man-pages from DIR
                  instead of building them (the tests use target/debug)
  --version V     package version (default: the workspace's version)
  --out DIR       where to write the package (default: target/debian)
  --compress TYPE xz (default), gzip or none; the tests use gzip, which
                  packs the large debug binaries in a fraction of the time
  --no-lint       do not run lintian on the result
  -h, --help      this text

Needs dpkg-dev (dpkg-shlibdeps), binutils (strip) and gzip; lintian if
installed.
USAGE
}

die() {
    echo "build-deb.sh: error: $*" >&2
    exit 1
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
profile=release
bin_dir=""
version=""
out=""
lint=yes
compress=xz

while [ $# -gt 0 ]; do
    case "$1" in
        --profile) [ $# -ge 2 ] || die "--profile needs a name"; profile=$2; shift 2 ;;
        --bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a directory"; bin_dir=$2; shift 2 ;;
        --version) [ $# -ge 2 ] || die "--version needs a version"; version=$2; shift 2 ;;
        --out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift 2 ;;
        --compress) [ $# -ge 2 ] || die "--compress needs xz, gzip or none"; compress=$2; shift 2 ;;
        --no-lint) lint=no; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
done

for tool in dpkg-deb dpkg-shlibdeps strip gzip; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install dpkg-dev binutils gzip)"
done

target_dir=${CARGO_TARGET_DIR:-$repo/target}
if [ -z "$bin_dir" ]; then
    cargo build --locked --profile "$profile" -p relay-in -p relay-out -p man-pages \
        --manifest-path "$repo/Cargo.toml" >&2
    case "$profile" in
        dev|test) bin_dir=$target_dir/debug ;;
        bench) bin_dir=$target_dir/release ;;
        *) bin_dir=$target_dir/$profile ;;
    esac
fi
for name in relay-in relay-out postern-man-pages; do
    [ -x "$bin_dir/$name" ] || die "$bin_dir/$name not found"
done
if [ -z "$version" ]; then
    version=$(cargo pkgid --offline --manifest-path "$repo/Cargo.toml" -p relay-in)
    version=${version##*[@#]}
fi
[ -n "$out" ] || out=$target_dir/debian
mkdir -p "$out"
out=$(cd "$out" && pwd)
arch=$(dpkg --print-architecture)
# The changelog's date: the last commit's, so two builds of one commit are
# the same package.
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH=$epoch

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
umask 022

# --- files ----------------------------------------------------------------

install -d "$root/usr/sbin" "$root/usr/lib/systemd/system" "$root/usr/share/postern" \
    "$root/usr/share/doc/postern" "$root/usr/share/man/man8" "$root/DEBIAN"
for name in relay-in relay-out; do
    install -m 0755 "$bin_dir/$name" "$root/usr/sbin/$name"
    # As dh_strip: the debug info and the build notes do not ship.
    strip --remove-section=.comment --remove-section=.note "$root/usr/sbin/$name"
    # The units name /usr/local/bin, where install.sh puts the binaries.
    sed 's#/usr/local/bin/#/usr/sbin/#g' "$repo/systemd/$name.service" \
        >"$root/usr/lib/systemd/system/$name.service"
    chmod 0644 "$root/usr/lib/systemd/system/$name.service"
done
install -m 0755 "$repo/deploy/acme-deploy-hook.sh" "$root/usr/share/postern/acme-deploy-hook.sh"

conffiles=$root/DEBIAN/conffiles
: >"$conffiles"
for pair in in:config-in out:config-out; do
    instance=${pair%%:*}
    source_dir=$repo/${pair#*:}
    while IFS= read -r -d '' source; do
        relative=${source#"$source_dir"/}
        # The READMEs explain the examples; they are not configuration.
        [ "$relative" != README.md ] || continue
        install -D -m 0644 "$source" "$root/etc/postern/$instance/$relative"
        echo "/etc/postern/$instance/$relative" >>"$conffiles"
    done < <(find "$source_dir" -type f -print0 | sort -z)
done

doc=$root/usr/share/doc/postern
install -m 0644 "$repo/README.md" "$doc/README.md"
for page in "$repo"/docs/*.md; do
    install -m 0644 "$page" "$doc/"
done
install -m 0644 "$repo/deploy/debian/copyright" "$doc/copyright"
{
    echo "postern ($version) unstable; urgency=medium"
    echo
    echo "  * Built from the Postern workspace by deploy/build-deb.sh."
    echo
    echo " -- ${DEBFULLNAME:-Postern maintainers} <${DEBEMAIL:-postern@example.invalid}>  $(date -u -R -d "@$epoch")"
} | gzip -9n >"$doc/changelog.gz"

"$bin_dir/postern-man-pages" "$work/man" >/dev/null
for page in "$work"/man/*.8; do
    gzip -9n <"$page" >"$root/usr/share/man/man8/$(basename "$page").gz"
done

# --- control --------------------------------------------------------------

for script in postinst prerm postrm; do
    install -m 0755 "$repo/deploy/debian/$script" "$root/DEBIAN/$script"
done

# dpkg-shlibdeps names the libraries the binaries link (libc6, libgcc-s1)
# with the lowest versions that have every symbol used. It wants a
# debian/control to read; a minimal one in the scratch directory serves.
mkdir -p "$work/debian"
printf 'Source: postern\n\nPackage: postern\nArchitecture: any\n' >"$work/debian/control"
shlibs=$(cd "$work" && dpkg-shlibdeps -O "$root/usr/sbin/relay-in" "$root/usr/sbin/relay-out")
shlibs=${shlibs#shlibs:Depends=}
# adduser: postinst creates the system user with it.
depends="adduser, $shlibs"

(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z \
    | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)

cat >"$root/DEBIAN/control" <<CONTROL
Package: postern
Version: $version
Architecture: $arch
Maintainer: ${DEBFULLNAME:-Postern maintainers} <${DEBEMAIL:-postern@example.invalid}>
Installed-Size: $installed_size
Depends: $depends
Section: mail
Priority: optional
Description: SMTP relays that replace Haraka's haraka-in and haraka-out
 Postern is a pair of mail relays for a VPS in front of a mail server:
 relay-in is the public MX (STARTTLS, recipients from host_list) and hands
 each message to the backend with XCLIENT; relay-out relays for the mail
 server and authenticated users through a durable queue to the
 recipients' MX hosts.
 .
 Both read an existing Haraka configuration directory. The units are
 enabled on installation but not started: edit /etc/postern first.
CONTROL

deb=$out/postern_${version}_${arch}.deb
# Every path root:root; postinst gives /etc/postern its group.
dpkg-deb --root-owner-group "-Z$compress" --build "$root" "$deb" >&2

if [ "$lint" = yes ]; then
    if command -v lintian >/dev/null; then
        # Errors fail the build; warnings are printed (see the list above).
        lintian --fail-on error "$deb" >&2
    else
        echo "build-deb.sh: lintian not installed; not checked (apt-get install lintian)" >&2
    fi
fi
echo "$deb"
