#!/usr/bin/env bash
# Eventarc: a bundle object finalized in the bucket -> on_bundle_uploaded on Cloud Run.
#
#   PROJECT_ID=my-project REGION=europe-west1 infra/cloudrun/eventarc.sh
#
# Run after deploy.sh (the service delta-on-bundle-uploaded must exist).
# Env: BUCKET (default delta-bundles, the bucket of STORAGE_URL), BUCKET_LOCATION
# (default: looked up; the trigger must live in the bucket's location), TRIGGER_SA
# (default delta-events@$PROJECT_ID.iam.gserviceaccount.com, created if missing).
#
# Cloud Storage triggers filter on the bucket only, not on a key prefix: every object
# the service writes to the bucket (tree files, head records, journal entries) fires the
# function too, which must return 2xx at once for keys outside <prefix>/incoming/. To
# deliver only incoming/ objects, a Pub/Sub notification with an object prefix can feed
# the trigger instead (commented at the end), but its events arrive as
# google.cloud.pubsub.topic.v1.messagePublished wrapping the object's JSON, a shape
# core/events.py does not read yet.
set -euo pipefail

: "${PROJECT_ID:?set PROJECT_ID}"
: "${REGION:?set REGION, the region of the Cloud Run service}"
BUCKET=${BUCKET:-delta-bundles}
SERVICE=delta-on-bundle-uploaded
TRIGGER=${TRIGGER:-delta-bundle-uploaded}
TRIGGER_SA=${TRIGGER_SA:-delta-events@$PROJECT_ID.iam.gserviceaccount.com}
if [[ -z ${BUCKET_LOCATION:-} ]]; then
    BUCKET_LOCATION=$(gcloud storage buckets describe "gs://$BUCKET" --format 'value(location)' \
        | tr '[:upper:]' '[:lower:]')
fi

gcloud services enable eventarc.googleapis.com pubsub.googleapis.com --project "$PROJECT_ID"

# Cloud Storage publishes its events through Pub/Sub: its service agent must publish.
gcs_agent=$(gcloud storage service-agent --project "$PROJECT_ID")
gcloud projects add-iam-policy-binding "$PROJECT_ID" \
    --member "serviceAccount:$gcs_agent" --role roles/pubsub.publisher >/dev/null

# The identity the trigger calls the (internal, authenticated) service with.
if ! gcloud iam service-accounts describe "$TRIGGER_SA" --project "$PROJECT_ID" >/dev/null 2>&1; then
    gcloud iam service-accounts create "${TRIGGER_SA%%@*}" --project "$PROJECT_ID" \
        --display-name "delta upload events"
fi
gcloud projects add-iam-policy-binding "$PROJECT_ID" \
    --member "serviceAccount:$TRIGGER_SA" --role roles/eventarc.eventReceiver >/dev/null
gcloud run services add-iam-policy-binding "$SERVICE" --project "$PROJECT_ID" --region "$REGION" \
    --member "serviceAccount:$TRIGGER_SA" --role roles/run.invoker >/dev/null

gcloud eventarc triggers create "$TRIGGER" \
    --project="$PROJECT_ID" \
    --location="$BUCKET_LOCATION" \
    --destination-run-service="$SERVICE" \
    --destination-run-region="$REGION" \
    --destination-run-path=/ \
    --event-filters="type=google.cloud.storage.object.v1.finalized" \
    --event-filters="bucket=$BUCKET" \
    --service-account="$TRIGGER_SA"

# Alternative with a key-prefix filter (PREFIX = the path of STORAGE_URL, e.g. prod):
#   gcloud pubsub topics create delta-incoming --project "$PROJECT_ID"
#   gcloud storage buckets notifications create "gs://$BUCKET" --topic delta-incoming \
#       --event-types OBJECT_FINALIZE --object-prefix "$PREFIX/incoming/" --payload-format json
#   gcloud eventarc triggers create delta-bundle-uploaded-pubsub --project "$PROJECT_ID" \
#       --location "$REGION" --destination-run-service "$SERVICE" --destination-run-region "$REGION" \
#       --event-filters "type=google.cloud.pubsub.topic.v1.messagePublished" \
#       --transport-topic "projects/$PROJECT_ID/topics/delta-incoming" \
#       --service-account "$TRIGGER_SA"
