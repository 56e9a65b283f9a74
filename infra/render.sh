#!/usr/bin/env bash
# Copy the Kubernetes and Knative manifests to OUT_DIR with the image filled in, for
# `kubectl apply` (infra/README.md). Cloud Run: infra/cloudrun/deploy.sh renders its own.
#
#   IMAGE=harbor.example.com/context-engine/delta-upload-service:0.1.0 infra/render.sh /tmp/delta-infra
set -euo pipefail

: "${IMAGE:?set IMAGE to the pushed image}"
out=${1:?usage: IMAGE=… infra/render.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
PLACEHOLDER_IMAGE=registry.example.com/context-engine/delta-upload-service:0.1.0

for dir in kubernetes knative; do
    mkdir -p "$out/$dir"
    for file in "$here/$dir"/*.yaml; do
        sed "s#$PLACEHOLDER_IMAGE#$IMAGE#g" "$file" >"$out/$dir/$(basename "$file")"
    done
done
echo "$out: kubernetes/ knative/ with image $IMAGE" >&2
