#!/usr/bin/env bash
# Fetch AWS's DynamoDB Local (the jar shipped in the npm package amplify-dynamodb-simulator)
# into .cache/dynamodb-local, for the session-log contract tests. Only the jar and its
# libraries are unpacked; the package's own Node dependencies are not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=2.9.30
DEST=.cache/dynamodb-local
if [ -f "$DEST/DynamoDBLocal.jar" ]; then exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "amplify-dynamodb-simulator@$VERSION" >/dev/null)
tar -xzf "$tmp"/amplify-dynamodb-simulator-*.tgz -C "$tmp"
mkdir -p "$DEST"
cp -r "$tmp/package/emulator/." "$DEST/"
echo "DynamoDB Local in $DEST"
