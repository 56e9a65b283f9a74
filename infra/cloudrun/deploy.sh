#!/usr/bin/env bash
# Deploy every function to Cloud Run from the service YAMLs beside this script.
#
#   PROJECT_ID=my-project REGION=europe-west1 \
#   IMAGE=europe-west1-docker.pkg.dev/my-project/context-engine/delta-upload-service:0.1.0 \
#   HMAC_ACCESS_ID=… HMAC_SECRET=… QDRANT_API_KEY=… API_KEYS_JSON=./api-keys.json \
#   ADMIN_TOKEN=$(openssl rand -hex 24) infra/cloudrun/deploy.sh
#
# HMAC_ACCESS_ID / HMAC_SECRET / QDRANT_API_KEY / ADMIN_TOKEN / API_KEYS_JSON (a file, see
# infra/kubernetes/secret.example.yaml) are needed only while their secret does not exist
# yet (rotate with `gcloud secrets versions add`). An HMAC key of the runtime service
# account: gcloud storage hmac create delta-upload@$PROJECT_ID.iam.gserviceaccount.com
# INVOKER (optional, e.g. allUsers or group:devs@example.com) may call the HTTP services;
# the service has no authentication of its own.
# GC_SCHEDULE (cron, default hourly at :17) is when Cloud Scheduler runs the retention sweep
# (delta-gc): an OIDC token of the runtime service account, delta-gc's only invoker, and
# X-Admin-Token from the delta-upload-admin-token secret (CTXCE_AUTH_ADMIN_TOKEN).
set -euo pipefail

: "${PROJECT_ID:?set PROJECT_ID}"
: "${REGION:?set REGION, e.g. europe-west1}"
: "${IMAGE:?set IMAGE to the pushed image (Artifact Registry)}"
BUCKET=${BUCKET:-delta-bundles}
here=$(cd "$(dirname "$0")" && pwd)
PLACEHOLDER_IMAGE=registry.example.com/context-engine/delta-upload-service:0.1.0
SERVICE_ACCOUNT=delta-upload@$PROJECT_ID.iam.gserviceaccount.com
SERVICES=(api health status manifest upload upload-url bundle-state bridge-state bundle-events on-bundle-uploaded auth admin search file deletion mcp gc)
HTTP_SERVICES=(delta-api delta-health delta-status delta-manifest delta-upload delta-upload-url delta-bundle-state delta-bridge-state delta-auth delta-search delta-file delta-admin delta-deletion delta-mcp)

gcloud services enable run.googleapis.com secretmanager.googleapis.com storage.googleapis.com \
    cloudscheduler.googleapis.com \
    --project "$PROJECT_ID"

# The identity the containers run as: reads its secrets, reads and writes the bucket.
if ! gcloud iam service-accounts describe "$SERVICE_ACCOUNT" --project "$PROJECT_ID" >/dev/null 2>&1; then
    gcloud iam service-accounts create delta-upload --project "$PROJECT_ID" \
        --display-name "delta upload service"
fi
gcloud storage buckets add-iam-policy-binding "gs://$BUCKET" \
    --member "serviceAccount:$SERVICE_ACCOUNT" --role roles/storage.objectAdmin >/dev/null

create_secret() {  # secret name, variable holding its first value, [file: the variable names a file]
    local name=$1 variable=$2 source=${3:-value}
    if ! gcloud secrets describe "$name" --project "$PROJECT_ID" >/dev/null 2>&1; then
        if [[ -z ${!variable:-} ]]; then
            echo "deploy.sh: set $variable to create the secret $name" >&2
            exit 1
        fi
        if [[ $source == file ]]; then
            gcloud secrets create "$name" --project "$PROJECT_ID" \
                --replication-policy automatic --data-file="${!variable}"
        else
            printf %s "${!variable}" | gcloud secrets create "$name" --project "$PROJECT_ID" \
                --replication-policy automatic --data-file=-
        fi
    fi
    gcloud secrets add-iam-policy-binding "$name" --project "$PROJECT_ID" \
        --member "serviceAccount:$SERVICE_ACCOUNT" --role roles/secretmanager.secretAccessor >/dev/null
}
create_secret delta-upload-hmac-access-id HMAC_ACCESS_ID
create_secret delta-upload-hmac-secret HMAC_SECRET
create_secret delta-upload-qdrant-api-key QDRANT_API_KEY
create_secret delta-upload-api-keys API_KEYS_JSON file
create_secret delta-upload-admin-token ADMIN_TOKEN

rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
for service in "${SERVICES[@]}"; do
    sed -e "s#$PLACEHOLDER_IMAGE#$IMAGE#g" -e "s#PROJECT_ID#$PROJECT_ID#g" \
        "$here/$service.yaml" >"$rendered/$service.yaml"
    gcloud run services replace "$rendered/$service.yaml" --project "$PROJECT_ID" --region "$REGION"
done

if [[ -n ${INVOKER:-} ]]; then
    for name in "${HTTP_SERVICES[@]}"; do
        gcloud run services add-iam-policy-binding "$name" --project "$PROJECT_ID" \
            --region "$REGION" --member "$INVOKER" --role roles/run.invoker >/dev/null
    done
fi
# The retention sweep on a schedule: only the runtime service account may invoke delta-gc,
# and the job sends it the admin token (re-created on every deploy, so a rotated token lands).
GC_SCHEDULE=${GC_SCHEDULE:-17 * * * *}
gcloud run services add-iam-policy-binding delta-gc --project "$PROJECT_ID" --region "$REGION" \
    --member "serviceAccount:$SERVICE_ACCOUNT" --role roles/run.invoker >/dev/null
gc_url=$(gcloud run services describe delta-gc --project "$PROJECT_ID" --region "$REGION" \
    --format 'value(status.url)')
admin_token=$(gcloud secrets versions access latest --secret delta-upload-admin-token --project "$PROJECT_ID")
if gcloud scheduler jobs describe delta-gc --project "$PROJECT_ID" --location "$REGION" >/dev/null 2>&1; then
    gcloud scheduler jobs delete delta-gc --project "$PROJECT_ID" --location "$REGION" --quiet
fi
gcloud scheduler jobs create http delta-gc --project "$PROJECT_ID" --location "$REGION" \
    --schedule "$GC_SCHEDULE" --uri "$gc_url/" --http-method POST \
    --oidc-service-account-email "$SERVICE_ACCOUNT" --oidc-token-audience "$gc_url" \
    --headers "X-Admin-Token=$admin_token" --attempt-deadline 900s >/dev/null

gcloud run services describe delta-api --project "$PROJECT_ID" --region "$REGION" \
    --format 'value(status.url)'
