set -e
export HOME=/home/agent XDG_CONFIG_HOME=/home/agent/.config XDG_DATA_HOME=/home/agent/.local/share XDG_CACHE_HOME=/home/agent/.cache
mkdir -p /home/agent/.code-server/user-data/User /home/agent/.code-server/extensions
printf '{"telemetry.telemetryLevel":"off"}\n' > /home/agent/.code-server/user-data/User/settings.json
exec /opt/code-server/node_modules/.bin/code-server --bind-addr 127.0.0.1:8080 --auth none --disable-telemetry --disable-update-check --user-data-dir /home/agent/.code-server/user-data --extensions-dir /home/agent/.code-server/extensions /workspace
