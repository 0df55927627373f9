#!/usr/bin/env bash
# Builds the distribution of blksnap (docs/install.md):
#   target/dist/blksnap-VERSION-linux-ARCH.tar.gz   a self-contained tree: bin/ (blksnapd, blksnap),
#                                                   lib/ (the jars), runtime/ (a jlink-trimmed Java 25,
#                                                   so the target needs no JDK), etc/ (example config),
#                                                   share/ (man pages, completion, the systemd unit)
#   target/dist/blksnap_DEBVERSION_ARCH.deb         the same tree under /usr/lib/blksnap, with
#                                                   /usr/bin links, /etc/blksnap/blksnapd.conf and
#                                                   blksnapd.service
#
#   dist/build.sh              builds the project first (mvn -DskipTests package)
#   dist/build.sh --no-build   assembles from an existing build (what `mvn -Pdist package` runs)
#
# Needs: a JDK 25 (jlink, jdeps), asciidoctor (man pages: apt-get install -y asciidoctor), dpkg-deb.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BUILD=1
for a in "$@"; do
  case "$a" in
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "dist/build.sh: unknown argument $a (see --help)" >&2; exit 64 ;;
  esac
done
JAVA_HOME="$(bin/jdk25)"; export JAVA_HOME
for t in asciidoctor dpkg-deb; do
  command -v "$t" >/dev/null || { echo "dist/build.sh: $t is missing (apt-get install -y ${t/dpkg-deb/dpkg})" >&2; exit 69; }
done
if [ "$BUILD" = 1 ]; then
  mvn -B -q -DskipTests package
fi
JAR=$(ls target/blksnap-*.jar 2>/dev/null | grep -v -e '-sources' -e '-tests' | head -n 1 || true)
[ -n "$JAR" ] && [ -d target/lib ] || { echo "dist/build.sh: no target/blksnap-*.jar or target/lib; run mvn package first" >&2; exit 66; }
VERSION=$(basename "$JAR" .jar); VERSION=${VERSION#blksnap-}
DEBVERSION=${VERSION/-SNAPSHOT/~snapshot}-1
case "$(uname -m)" in x86_64) ARCH=x64; DEBARCH=amd64 ;; aarch64) ARCH=aarch64; DEBARCH=arm64 ;; *) ARCH=$(uname -m); DEBARCH=$ARCH ;; esac
CODEGEN=$(ls target/dist-tools/picocli-codegen-*.jar 2>/dev/null | head -n 1 || true)
if [ -z "$CODEGEN" ]; then
  PICOCLI=$(ls target/lib/picocli-*.jar | head -n 1); PV=$(basename "$PICOCLI" .jar); PV=${PV#picocli-}
  mvn -B -q dependency:copy -Dartifact="info.picocli:picocli-codegen:$PV" -DoutputDirectory=target/dist-tools >&2
  CODEGEN=$(ls target/dist-tools/picocli-codegen-*.jar | head -n 1)
fi

OUT=target/dist
NAME=blksnap-$VERSION
STAGE=$OUT/stage/$NAME
rm -rf "$OUT"; mkdir -p "$STAGE"/{bin,lib,etc,share/man/man1,share/bash-completion/completions,share/zsh/site-functions,share/blksnap}
echo "dist: $NAME ($DEBVERSION, $DEBARCH)" >&2

# ---- the jars and a trimmed runtime ---------------------------------------------------------------
cp "$JAR" target/lib/*.jar "$STAGE/lib/"
MODS=$("$JAVA_HOME/bin/jdeps" --ignore-missing-deps --print-module-deps --multi-release 25 "$JAR" target/lib/*.jar \
  | tail -n 1)
[[ "$MODS" =~ ^[a-z.,]+$ ]] || { echo "dist/build.sh: jdeps gave no module list: $MODS" >&2; exit 70; }
# jdk.management and jdk.jfr: the JVM gauges of /metrics and flight recordings for operators;
# jdk.crypto.ec: TLS; jdk.unsupported: libraries that probe sun.misc at run time.
MODS="$MODS,jdk.management,jdk.jfr,jdk.crypto.ec,jdk.unsupported,jdk.jcmd"
echo "dist: jlink $MODS" >&2
"$JAVA_HOME/bin/jlink" --add-modules "$MODS" --output "$STAGE/runtime" --strip-debug --no-man-pages \
  --no-header-files --compress=zip-6 --generate-cds-archive
cp bin/blksnapd bin/blksnap "$STAGE/bin/"
chmod 755 "$STAGE/bin/"*

# ---- completion and man pages, from the picocli model ----------------------------------------------
RT="$STAGE/runtime/bin/java"
for cmd in blksnap:org.blksnap.cli.Main blksnapd:org.blksnap.daemon.Blksnapd; do
  "$RT" -cp "$STAGE/lib/*" picocli.AutoComplete --force --name="${cmd%%:*}" \
    --completionScript="$STAGE/share/bash-completion/completions/${cmd%%:*}" "${cmd#*:}" >&2
done
# zsh: the same functions through bashcompinit, in one autoloadable _blksnap (the bash scripts' own
# zsh set-up, the block from `if [ -n "$BASH_VERSION" ]` to its `fi`, is left out: it sets options
# and an alias for the whole shell).
ZSHF="$STAGE/share/zsh/site-functions/_blksnap"
{
  cat dist/zsh-completion.head
  for c in blksnap blksnapd; do
    sed '/^if \[ -n "\$BASH_VERSION" \]; then$/,/^fi$/d' "$STAGE/share/bash-completion/completions/$c"
  done
  cat dist/zsh-completion.tail
} > "$ZSHF"
grep -q 'BASH_VERSION' "$ZSHF" && { echo "dist/build.sh: the bash completion's zsh set-up was not removed from $ZSHF" >&2; exit 70; }
ADOC=$OUT/adoc; mkdir -p "$ADOC"
"$RT" -cp "$STAGE/lib/*:$CODEGEN" picocli.codegen.docgen.manpage.ManPageGenerator -d "$ADOC" \
  org.blksnap.cli.Main org.blksnap.daemon.Blksnapd >&2
asciidoctor -b manpage -D "$STAGE/share/man/man1" "$ADOC"/*.adoc
cp dist/blksnapd.conf "$STAGE/etc/blksnapd.conf.example"
cp dist/blksnapd.service "$STAGE/share/blksnap/blksnapd.service"
cp README.md "$STAGE/share/blksnap/"
cp dist/INSTALL.txt "$STAGE/"

# ---- the tarball -----------------------------------------------------------------------------------
TAR=$OUT/$NAME-linux-$ARCH.tar.gz
tar -C "$OUT/stage" --owner=0 --group=0 -czf "$TAR" "$NAME"

# ---- the Debian package ----------------------------------------------------------------------------
D=$OUT/deb
mkdir -p "$D/DEBIAN" "$D/usr/lib/blksnap" "$D/usr/bin" "$D/etc/blksnap" "$D/lib/systemd/system" \
  "$D/usr/share/man/man1" "$D/usr/share/bash-completion/completions" "$D/usr/share/zsh/vendor-completions" \
  "$D/usr/share/doc/blksnap"
cp -a "$STAGE/bin" "$STAGE/lib" "$STAGE/runtime" "$D/usr/lib/blksnap/"
ln -s ../lib/blksnap/bin/blksnapd "$D/usr/bin/blksnapd"
ln -s ../lib/blksnap/bin/blksnap "$D/usr/bin/blksnap"
cp dist/blksnapd.conf "$D/etc/blksnap/blksnapd.conf"
cp dist/blksnapd.service "$D/lib/systemd/system/blksnapd.service"
for m in "$STAGE"/share/man/man1/*.1; do gzip -9n < "$m" > "$D/usr/share/man/man1/$(basename "$m").gz"; done
cp "$STAGE"/share/bash-completion/completions/* "$D/usr/share/bash-completion/completions/"
cp "$STAGE"/share/zsh/site-functions/_blksnap "$D/usr/share/zsh/vendor-completions/"
gzip -9n < README.md > "$D/usr/share/doc/blksnap/README.md.gz"
cp dist/deb/copyright "$D/usr/share/doc/blksnap/copyright"
cp dist/deb/postinst dist/deb/prerm dist/deb/postrm "$D/DEBIAN/"; chmod 755 "$D/DEBIAN/"post* "$D/DEBIAN/prerm"
echo /etc/blksnap/blksnapd.conf > "$D/DEBIAN/conffiles"
SIZE_KB=$(du -sk --exclude=DEBIAN "$D" | cut -f1)
sed -e "s/@VERSION@/$DEBVERSION/" -e "s/@ARCH@/$DEBARCH/" -e "s/@SIZE@/$SIZE_KB/" dist/deb/control.in > "$D/DEBIAN/control"
DEB=$OUT/blksnap_${DEBVERSION}_$DEBARCH.deb
dpkg-deb --root-owner-group -Zgzip --build "$D" "$DEB" >&2
rm -rf "$OUT/stage" "$D" "$ADOC"
ls -l "$TAR" "$DEB" >&2
