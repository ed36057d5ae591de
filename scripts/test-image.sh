#!/usr/bin/env bash
# Berth: prove that the runtime stage of docker/Dockerfile works with the real
# Docker engine, without pulling anything from any registry.
#
#   scripts/test-image.sh [path/to/berth]      (default: target/debug/berth)
#
# 1. Assembles a minimal root filesystem from what `ldd` reports for the binary
#    (shared libraries and the dynamic loader), /etc/passwd and /etc/group,
#    /tmp and the CA bundle, and `docker import`s it as a local base image.
# 2. Builds the `runtime-from-binary` target of docker/Dockerfile on that base
#    (--build-arg RUNTIME_BASE=...), with the legacy builder by default
#    (BERTH_TEST_BUILDKIT=1 uses BuildKit, which needs the buildx plugin).
# 3. Runs the image on a free port of 127.0.0.1 with BERTH_AUTH_ADMIN_PASSWORD,
#    waits for /healthz, checks /readyz, the 401 Bearer challenge, that it runs
#    as uid 10001, then `docker login`, push, remove, pull back (with a private
#    DOCKER_CONFIG), checks the data landed in the /data volume and that the
#    container stops cleanly on SIGTERM.
# Removes every container, image and temporary directory it made (trap), and
# exits non-zero with a message naming the failed step. Starts dockerd if it is
# not running (and leaves it running, like scripts/test.sh).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCKERFILE="$REPO_ROOT/docker/Dockerfile"
BINARY="${1:-$REPO_ROOT/target/debug/berth}"
WAIT_SECS="${BERTH_TEST_WAIT_SECS:-30}"
DOCKERD_WAIT_SECS="${BERTH_DOCKERD_WAIT_SECS:-60}"
BUILDKIT="${BERTH_TEST_BUILDKIT:-0}"
EXPECTED_UID=10001

RUN_ID="$$-$RANDOM"
BASE_IMAGE="berth-test-base:$RUN_ID"
IMAGE="berth-test:$RUN_ID"
SMOKE_IMAGE="berth-test-smoke:$RUN_ID"
CONTAINER="berth-test-$RUN_ID"
ADMIN_PASSWORD="smoke-$RANDOM$RANDOM-pass"
START=$SECONDS

info() { printf '[test-image] %s\n' "$*"; }
die() {
    printf '[test-image] FAILED: %s\n' "$*" >&2
    exit 1
}

WORK=""
PUSHED_REF=""
container_started=0
cleanup() {
    local rc=$?
    set +e
    if ((rc != 0 && container_started)); then
        printf '[test-image] last container logs:\n' >&2
        docker logs --tail 40 "$CONTAINER" >&2 2>&1
    fi
    ((container_started)) && docker rm -f -v "$CONTAINER" >/dev/null 2>&1
    for img in "$PUSHED_REF" "$SMOKE_IMAGE" "$IMAGE" "$BASE_IMAGE"; do
        [[ -n "$img" ]] && docker rmi -f "$img" >/dev/null 2>&1
    done
    [[ -n "$WORK" ]] && rm -rf "$WORK"
    if ((rc == 0)); then
        info "PASSED in $((SECONDS - START))s"
    else
        printf '[test-image] exit %d after %ds\n' "$rc" "$((SECONDS - START))" >&2
    fi
}
trap cleanup EXIT

# ---------------------------------------------------------------- prerequisites
for cmd in docker curl ldd tar; do
    command -v "$cmd" >/dev/null 2>&1 || die "\`$cmd\` not found in PATH"
done
[[ -f "$DOCKERFILE" ]] || die "$DOCKERFILE not found"
[[ -x "$BINARY" ]] || die "berth binary $BINARY not found or not executable (build it first: cargo build)"
BINARY="$(cd "$(dirname "$BINARY")" && pwd)/$(basename "$BINARY")"

if ! docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null 2>&1 || die "the Docker engine is not running and dockerd is not installed"
    info "starting dockerd (log: /tmp/dockerd.log)"
    setsid nohup dockerd >/tmp/dockerd.log 2>&1 </dev/null &
    deadline=$((SECONDS + DOCKERD_WAIT_SECS))
    until docker info >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "dockerd did not come up within ${DOCKERD_WAIT_SECS}s (see /tmp/dockerd.log)"
        sleep 0.5
    done
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/berth-test-image.XXXXXX")"
DOCKER_CONFIG_PRIVATE="$WORK/docker-config"
mkdir -m 700 "$DOCKER_CONFIG_PRIVATE"
# The docker CLI with a private config: logins made here never touch ~/.docker.
dk() { DOCKER_CONFIG="$DOCKER_CONFIG_PRIVATE" docker "$@"; }

# ---------------------------------------------------------------- 1. local base image
info "binary: $BINARY"
ROOTFS="$WORK/rootfs"
mkdir -p "$ROOTFS/etc/ssl/certs" "$ROOTFS/tmp" "$ROOTFS/usr/local/bin"
chmod 1777 "$ROOTFS/tmp"

ldd_out="$(ldd "$BINARY" 2>&1)" || true
if grep -q 'not found' <<<"$ldd_out"; then
    die "ldd cannot resolve every library of $BINARY:"$'\n'"$ldd_out"
fi
# Every absolute path ldd prints: resolved libraries and the dynamic loader.
mapfile -t libs < <(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' <<<"$ldd_out" | sort -u)
for lib in "${libs[@]}"; do
    [[ -e "$lib" ]] || die "library $lib reported by ldd does not exist"
    mkdir -p "$ROOTFS$(dirname "$lib")"
    cp -L "$lib" "$ROOTFS$lib"
done
info "base image libraries: ${libs[*]:-none (static binary)}"

cat >"$ROOTFS/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
berth:x:10001:10001:berth:/data:/sbin/nologin
EOF
cat >"$ROOTFS/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
berth:x:10001:
EOF
printf 'hosts: files dns\n' >"$ROOTFS/etc/nsswitch.conf"
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/"
fi

tar --numeric-owner --owner=0 --group=0 -C "$ROOTFS" -cf - . |
    docker import --message "berth test base (no shell)" - "$BASE_IMAGE" >/dev/null ||
    die "docker import of the base rootfs failed"
info "imported $BASE_IMAGE ($(docker image inspect --format '{{.Size}}' "$BASE_IMAGE") bytes)"

# ---------------------------------------------------------------- 2. build the runtime stage
CTX="$WORK/context"
mkdir "$CTX"
ln "$BINARY" "$CTX/berth" 2>/dev/null || cp "$BINARY" "$CTX/berth"
info "building $IMAGE (target runtime-from-binary, DOCKER_BUILDKIT=$BUILDKIT)"
if ! DOCKER_BUILDKIT="$BUILDKIT" docker build \
    --file "$DOCKERFILE" \
    --target runtime-from-binary \
    --build-arg "RUNTIME_BASE=$BASE_IMAGE" \
    --tag "$IMAGE" \
    "$CTX" >"$WORK/build.log" 2>&1; then
    cat "$WORK/build.log" >&2
    die "docker build of the runtime-from-binary stage failed"
fi

user="$(docker image inspect --format '{{.Config.User}}' "$IMAGE")"
[[ "${user%%:*}" == "$EXPECTED_UID" ]] || die "image user is '$user', expected $EXPECTED_UID:$EXPECTED_UID"
info "image user: $user"

# ---------------------------------------------------------------- 3. run it
docker run --detach --name "$CONTAINER" \
    --env "BERTH_AUTH_ADMIN_PASSWORD=$ADMIN_PASSWORD" \
    --publish 127.0.0.1::5000 \
    "$IMAGE" >/dev/null || die "docker run failed"
container_started=1
hostport="$(docker port "$CONTAINER" 5000/tcp | grep -m1 '^127\.0\.0\.1:')" ||
    die "container port 5000 is not published on 127.0.0.1"
PORT="${hostport##*:}"
BASE_URL="http://127.0.0.1:$PORT"
REGISTRY="127.0.0.1:$PORT"
info "container $CONTAINER on $BASE_URL"

wait_start=$SECONDS
deadline=$((SECONDS + WAIT_SECS))
until [[ "$(curl -fsS --max-time 2 "$BASE_URL/healthz" 2>/dev/null)" == "ok" ]]; do
    [[ "$(docker inspect --format '{{.State.Running}}' "$CONTAINER")" == "true" ]] ||
        die "container exited before /healthz answered"
    ((SECONDS < deadline)) || die "GET /healthz did not answer 'ok' within ${WAIT_SECS}s"
    sleep 0.2
done
info "GET /healthz -> ok (waited $((SECONDS - wait_start))s)"

code="$(curl -sS -o /dev/null -w '%{http_code}' "$BASE_URL/readyz")"
[[ "$code" == 200 ]] || die "GET /readyz answered $code, expected 200"
info "GET /readyz -> 200"

challenge="$(curl -sS -o /dev/null -D - "$BASE_URL/v2/" | tr -d '\r' | grep -i '^www-authenticate:' || true)"
[[ "$challenge" == *"Bearer realm=\"$BASE_URL/token\""* ]] ||
    die "GET /v2/ should answer a Bearer challenge with realm $BASE_URL/token, got: '${challenge:-no WWW-Authenticate header}'"
info "GET /v2/ -> ${challenge#*: }"

# The process really runs as the unprivileged user (ps on the host; the image has no shell).
proc_uid="$(docker top "$CONTAINER" -o pid,uid | awk 'NR == 2 { print $2 }')" ||
    die "docker top $CONTAINER failed"
[[ "$proc_uid" == "$EXPECTED_UID" ]] || die "berth runs as uid '$proc_uid', expected $EXPECTED_UID"
info "berth process uid: $proc_uid"

# ---------------------------------------------------------------- 4. login, push, pull
printf '%s' "$ADMIN_PASSWORD" | dk login "$REGISTRY" --username admin --password-stdin >"$WORK/login.log" 2>&1 || {
    cat "$WORK/login.log" >&2
    die "docker login $REGISTRY -u admin failed"
}
info "docker login $REGISTRY -u admin -> $(tail -n1 "$WORK/login.log")"

# A tiny image of its own (one small file), so the pushed blob is unique to this run.
mkdir "$WORK/smoke"
printf 'berth smoke test %s %s\n' "$RUN_ID" "$(date -u +%FT%TZ)" >"$WORK/smoke/smoke.txt"
tar --numeric-owner --owner=0 --group=0 -C "$WORK/smoke" -cf - smoke.txt |
    docker import - "$SMOKE_IMAGE" >/dev/null || die "docker import of the smoke image failed"
smoke_id="$(docker image inspect --format '{{.Id}}' "$SMOKE_IMAGE")"

PUSHED_REF="$REGISTRY/admin/smoke:1"
docker tag "$SMOKE_IMAGE" "$PUSHED_REF"
dk push "$PUSHED_REF" >"$WORK/push.log" 2>&1 || {
    cat "$WORK/push.log" >&2
    die "docker push $PUSHED_REF failed"
}
info "docker push $PUSHED_REF -> $(grep -o 'digest: sha256:[0-9a-f]*' "$WORK/push.log" || tail -n1 "$WORK/push.log")"

docker rmi "$PUSHED_REF" "$SMOKE_IMAGE" >/dev/null || die "could not remove the local copies of the smoke image"
if docker image inspect "$smoke_id" >/dev/null 2>&1; then
    die "smoke image $smoke_id is still present locally; the pull would prove nothing"
fi

dk pull "$PUSHED_REF" >"$WORK/pull.log" 2>&1 || {
    cat "$WORK/pull.log" >&2
    die "docker pull $PUSHED_REF failed"
}
pulled_id="$(docker image inspect --format '{{.Id}}' "$PUSHED_REF")"
[[ "$pulled_id" == "$smoke_id" ]] || die "pulled image id $pulled_id differs from the pushed $smoke_id"
info "docker pull $PUSHED_REF -> same image id ${pulled_id:0:19}"

# ---------------------------------------------------------------- 5. data volume, clean stop
data_listing="$(docker cp "$CONTAINER:/data" - | tar -tf - --numeric-owner)"
grep -q '^data/berth.db$' <<<"$data_listing" || die "/data/berth.db was not created in the volume"
grep -q '^data/blobs/' <<<"$data_listing" || die "no blobs were stored under /data/blobs"
info "/data holds berth.db and blobs/"

stop_start=$SECONDS
docker stop --time 10 "$CONTAINER" >/dev/null || die "docker stop failed"
exit_code="$(docker inspect --format '{{.State.ExitCode}}' "$CONTAINER")"
[[ "$exit_code" == 0 ]] || die "berth exited with code $exit_code on SIGTERM, expected 0"
info "docker stop -> exit code 0 after $((SECONDS - stop_start))s"
