#!/usr/bin/env bash
# Ceph RGW bucket notification: every object created under <prefix>/incoming/ of the
# bucket (a directly uploaded bundle) is pushed (HTTP POST) to the service: through the
# CephSource to on_bundle_uploaded, or straight to bundle_events.
#
#   S3_ENDPOINT_URL=http://rook-ceph-rgw-objectstore.rook-ceph.svc:80 \
#   AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… \
#   infra/knative/rgw-notifications.sh
#
# Env (defaults match infra/kubernetes/configmap.yaml and infra/knative/ceph-source.yaml):
#   S3_ENDPOINT_URL  RGW endpoint (S3 and SNS APIs), required
#   STORAGE_URL      s3://<bucket>/<prefix> of the service (default s3://delta-bundles/prod)
#   TOPIC            topic name (default delta-bundle-uploaded)
#   PUSH_ENDPOINT    where RGW posts (RGW must reach it: Rook runs RGW in the cluster);
#                    default the CephSource receive adapter (ceph-source.yaml), which
#                    turns each record into a CloudEvent for delta-on-bundle-uploaded:
#                      http://delta-bundles-ceph-source.context-engine.svc.cluster.local
#                    Without Knative Eventing, RGW's plain JSON goes straight to the
#                    bundle_events function instead:
#                      http://delta-bundle-events.context-engine.svc.cluster.local
#                      (or http://upload-service.context-engine.svc.cluster.local:8002/api/v1/delta/events
#                       for the Kubernetes Deployment on S3 storage)
#
# The topic is persistent: RGW queues each event and retries until the endpoint answers
# 2xx. A non-persistent HTTP topic pushes synchronously inside the client's PUT, which
# would then wait for the whole bundle to be processed.
#
# put-bucket-notification-configuration replaces the bucket's notification
# configuration: merge by hand if the bucket already has other notifications.
set -euo pipefail

: "${S3_ENDPOINT_URL:?set S3_ENDPOINT_URL to the RGW endpoint}"
STORAGE_URL=${STORAGE_URL:-s3://delta-bundles/prod}
TOPIC=${TOPIC:-delta-bundle-uploaded}
PUSH_ENDPOINT=${PUSH_ENDPOINT:-http://delta-bundles-ceph-source.context-engine.svc.cluster.local}
# The aws CLI (v2.23+) adds CRC checksums by default, which older RGW releases reject.
export AWS_REQUEST_CHECKSUM_CALCULATION=when_required
export AWS_RESPONSE_CHECKSUM_VALIDATION=when_required
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}

location=${STORAGE_URL#s3://}
BUCKET=${location%%/*}
PREFIX=""
if [[ $location == */* ]]; then
    PREFIX=${location#*/}
    PREFIX=${PREFIX%/}
fi
KEY_PREFIX="${PREFIX:+$PREFIX/}incoming/"

attributes="{\"push-endpoint\": \"$PUSH_ENDPOINT\", \"persistent\": \"true\"}"

topic_arn=$(aws --endpoint-url "$S3_ENDPOINT_URL" sns create-topic \
    --name "$TOPIC" \
    --attributes "$attributes" \
    --query TopicArn --output text)
echo "topic: $topic_arn -> $PUSH_ENDPOINT" >&2

aws --endpoint-url "$S3_ENDPOINT_URL" s3api put-bucket-notification-configuration \
    --bucket "$BUCKET" \
    --notification-configuration "{
      \"TopicConfigurations\": [{
        \"Id\": \"delta-incoming-bundles\",
        \"TopicArn\": \"$topic_arn\",
        \"Events\": [\"s3:ObjectCreated:*\"],
        \"Filter\": {\"Key\": {\"FilterRules\": [{\"Name\": \"prefix\", \"Value\": \"$KEY_PREFIX\"}]}}
      }]
    }"
echo "bucket $BUCKET: s3:ObjectCreated:* under $KEY_PREFIX -> $TOPIC" >&2

# Check:
#   aws --endpoint-url "$S3_ENDPOINT_URL" sns get-topic-attributes --topic-arn "$topic_arn"
#   aws --endpoint-url "$S3_ENDPOINT_URL" s3api get-bucket-notification-configuration --bucket "$BUCKET"
